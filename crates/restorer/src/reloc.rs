//! Self-relocation. A static-pie without the C runtime's start files has
//! nobody to apply its `R_X86_64_RELATIVE` relocations, and the linker
//! symbols below are otherwise reached through the (unrelocated) GOT, so
//! their addresses are taken with `lea [rip + sym]`.

use core::arch::asm;

const DT_NULL: u64 = 0;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const R_X86_64_RELATIVE: u64 = 8;

fn ehdr_start() -> u64 {
    let r: u64;
    // SAFETY: computes an address; reads nothing.
    unsafe { asm!("lea {}, [rip + __ehdr_start]", out(reg) r, options(nomem, nostack, pure)) };
    r
}

fn dynamic() -> u64 {
    let r: u64;
    // SAFETY: computes an address; reads nothing.
    unsafe { asm!("lea {}, [rip + _DYNAMIC]", out(reg) r, options(nomem, nostack, pure)) };
    r
}

fn end() -> u64 {
    let r: u64;
    // SAFETY: computes an address; reads nothing.
    unsafe { asm!("lea {}, [rip + _end]", out(reg) r, options(nomem, nostack, pure)) };
    r
}

/// Load address of this executable (its ELF header is at offset 0).
pub fn image_base() -> u64 {
    ehdr_start()
}

/// `[start, end)` of everything loaded from this executable, .bss included.
pub fn image_span() -> (u64, u64) {
    (ehdr_start(), end())
}

/// Applies RELATIVE relocations for a copy of this executable placed at
/// `target`, reading the dynamic section of the running copy at `running`.
///
/// # Safety
/// `target` must hold a writable copy of this executable's span (or be the
/// running image itself), and nothing may be using the relocated values
/// concurrently.
pub unsafe fn relocate(running: u64, target: u64) {
    let dyn_ptr = dynamic();
    let (mut rela, mut relasz) = (0u64, 0u64);
    let mut p = dyn_ptr as *const [u64; 2];
    loop {
        // the dynamic section is a DT_NULL-terminated array of
        // (tag, value) pairs inside our own image.
        // SAFETY: see just above.
        let [tag, val] = unsafe { core::ptr::read_volatile(p) };
        match tag {
            DT_NULL => break,
            DT_RELA => rela = val,
            DT_RELASZ => relasz = val,
            _ => {}
        }
        // SAFETY: stays inside the array until DT_NULL.
        p = unsafe { p.add(1) };
    }
    let count = relasz / 24;
    for i in 0..count {
        let entry = (running + rela + i * 24) as *const [u64; 3];
        // SAFETY: DT_RELA/DT_RELASZ describe an array inside our image.
        let [off, info, addend] = unsafe { core::ptr::read_volatile(entry) };
        if info & 0xffff_ffff == R_X86_64_RELATIVE {
            // SAFETY: the relocation targets a word inside the (copied) image.
            unsafe { core::ptr::write_volatile((target + off) as *mut u64, target + addend) };
        }
    }
}
