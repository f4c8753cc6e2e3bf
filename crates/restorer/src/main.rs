//! `hiber-restore`: replaces itself with a saved process.
//!
//! A freestanding static-pie (no libc, no TLS, no allocator): everything it
//! does is raw system calls, so it can tear down its own address space and
//! build the saved one in its place. `hiber restart` has already verified
//! the image and turned it into a flat plan (`hiber_sys::plan`) read from
//! the file descriptor named by `argv[1]`.
//!
//! Phase 1 runs where the kernel loaded us: relocate ourselves, read the
//! plan, find a hole that misses every saved area and every current mapping,
//! copy ourselves (and the plan) there, re-apply our relocations for the new
//! base, switch to a stack in the hole. Phase 2 runs from the copy: unmap
//! everything we came with (old binary, stack) except the vDSO/vvar, park
//! those inside the hole, map every saved area at its exact address
//! (`MAP_FIXED_NOREPLACE`: a collision is an error, never an overwrite),
//! move the vDSO/vvar to their saved addresses (glibc caches pointers into
//! the vDSO), restore the mm layout (brk, arg/env ranges) and jump to the
//! agent's restart entry inside the restored memory. The agent unmaps the
//! hole once it no longer runs on it.
//!
//! All of it is async-signal-safe by construction: no allocation, no locks,
//! and the panic handler only prints and exits.

#![no_std]
#![no_main]

mod maps;
mod mem;
mod reloc;

use core::arch::{asm, naked_asm};

use hiber_sys::consts::*;
use hiber_sys::fmt::Msg;
use hiber_sys::plan::*;

/// Stack for phase 2 and for the agent's first steps.
const STACK_SIZE: u64 = 512 << 10;
const PAGE: u64 = 4096;
/// Lowest address considered for the hole (keeps clear of low mappings).
const HOLE_FLOOR: u64 = 0x1000_0000;
/// Top of the user address space on x86-64 with 4-level paging.
const USER_TOP: u64 = 0x7fff_ffff_f000;

/// Exit status when the restore fails before the program runs again.
const EXIT_FAILED: i32 = 111;

/// The process entry point.
///
/// # Safety
/// Only the kernel calls it, with the initial stack.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _start() -> ! {
    // The kernel leaves argc at rsp (16-byte aligned); `call` makes the
    // callee see the ABI's rsp % 16 == 8.
    naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {main}",
        "ud2",
        main = sym phase1,
    )
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    die("internal error (panic)", 0)
}

fn die(what: &str, value: u64) -> ! {
    let mut m = Msg::<256>::new();
    m.str("hiber-restore: ")
        .str(what)
        .str(" (")
        .hex(value)
        .str(")\n");
    let _ = hiber_sys::write_all(2, m.as_bytes());
    hiber_sys::exit_group(EXIT_FAILED)
}

fn warn(what: &str, value: u64) {
    let mut m = Msg::<256>::new();
    m.str("hiber-restore: warning: ")
        .str(what)
        .str(" (")
        .hex(value)
        .str(")\n");
    let _ = hiber_sys::write_all(2, m.as_bytes());
}

const fn page_up(v: u64) -> u64 {
    (v + PAGE - 1) & !(PAGE - 1)
}

/// Everything phase 2 needs; lives at the start of the hole's data part.
#[repr(C)]
struct Ctx {
    hole_start: u64,
    hole_len: u64,
    plan: u64,
    plan_len: u64,
    /// Where the current vDSO/vvar block is parked during phase 2.
    special_tmp: u64,
    handoff: Handoff,
}

/// Phase 1: runs at the address the kernel chose.
extern "C" fn phase1(sp: *const u64) -> ! {
    let base = reloc::image_base();
    // We are the only code running and nothing has read a GOT
    // entry or function pointer yet; `base` is our own load address.
    // SAFETY: see just above.
    unsafe { reloc::relocate(base, base) };

    // `sp` is the initial stack pointer the kernel gave `_start`:
    // argc followed by argc argv pointers.
    // SAFETY: see just above.
    let (argc, argv1) = unsafe { (*sp, *sp.add(2)) };
    if argc < 2 {
        die(
            "usage: hiber-restore PLAN_FD (run by `hiber restart`)",
            argc,
        );
    }
    // SAFETY: argv[1] is a NUL-terminated string provided by the kernel.
    let arg = unsafe { core::ffi::CStr::from_ptr(argv1 as *const core::ffi::c_char) };
    let plan_fd = match hiber_sys::fmt::parse_u64(arg.to_bytes()) {
        Some(v) if v < i32::MAX as u64 => v as i32,
        _ => die("argument is not a file descriptor number", 0),
    };

    // No signal may interrupt us half-way; the agent installs the saved
    // mask of every thread through rt_sigreturn.
    hiber_sys::sigprocmask(SIG_SETMASK, !0);
    // The checkpointed process tree: this restorer forks its children
    // first, each of which continues here with its own plan.
    let plan_fd = fork_tree(plan_fd);

    let mut hdr = PlanHeader::default();
    // SAFETY: PlanHeader is plain integers; any bytes are a valid value.
    let hdr_bytes = unsafe {
        core::slice::from_raw_parts_mut(
            (&mut hdr as *mut PlanHeader).cast::<u8>(),
            PlanHeader::SIZE,
        )
    };
    match hiber_sys::pread(plan_fd, hdr_bytes, 0) {
        Ok(n) if n == PlanHeader::SIZE => {}
        _ => die("cannot read the restore plan", plan_fd as u64),
    }
    if hdr.magic != PLAN_MAGIC || hdr.total_len < PlanHeader::SIZE as u64 || hdr.total_len > 1 << 32
    {
        die("restore plan has a bad header", hdr.magic);
    }
    let plan_len = page_up(hdr.total_len);
    // SAFETY: a fresh anonymous mapping chosen by the kernel.
    let tmp = unsafe {
        hiber_sys::mmap(
            0,
            plan_len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .unwrap_or_else(|e| die("cannot map the plan buffer", e.into_raw() as u64));
    read_exact(plan_fd, tmp as u64, hdr.total_len, 0);
    // SAFETY: the plan buffer holds `total_len` bytes; `close_fds` checks the table's bounds.
    unsafe { close_fds(tmp as u64, &hdr) };

    // Our own mappings (after the plan buffer exists, so it is included).
    maps::read_self();

    let (self_start, self_end) = reloc::image_span();
    let self_len = page_up(self_end) - self_start;
    let (spec_lo, spec_hi) = maps::special_span();
    let spec_len = spec_hi - spec_lo;
    let ctx_len = page_up(core::mem::size_of::<Ctx>() as u64);
    let hole_len = self_len + ctx_len + plan_len + spec_len + STACK_SIZE;

    // The plan buffer holds `total_len` bytes read above and the
    // header's offsets are checked by `plan_areas`.
    // SAFETY: see just above.
    let areas = unsafe { plan_areas(tmp as u64, &hdr) };
    let hole = find_hole(hole_len, areas);
    // SAFETY: NOREPLACE: the kernel refuses if anything is there.
    let got = unsafe {
        hiber_sys::mmap(
            hole,
            hole_len,
            PROT_READ | PROT_WRITE | PROT_EXEC,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    }
    .unwrap_or_else(|e| die("cannot map the restorer's hole", e.into_raw() as u64));
    if got as u64 != hole {
        die("kernel placed the hole elsewhere", got as u64);
    }

    // SAFETY: both ranges are mapped and disjoint (the hole missed every current mapping).
    unsafe {
        mem::copy(hole, self_start, self_end - self_start);
        // Re-apply our relocations for the copy: RELATIVE relocations are
        // absolute writes, so doing them again for a new base is exact.
        reloc::relocate(self_start, hole);
    }
    let ctx_addr = hole + self_len;
    let plan_addr = ctx_addr + ctx_len;
    // SAFETY: inside the hole, disjoint from the plan buffer.
    unsafe { mem::copy(plan_addr, tmp as u64, hdr.total_len) };
    let ctx = Ctx {
        hole_start: hole,
        hole_len,
        plan: plan_addr,
        plan_len: hdr.total_len,
        special_tmp: plan_addr + plan_len,
        handoff: Handoff::default(),
    };
    // SAFETY: ctx_addr is inside the hole and page-aligned.
    unsafe { core::ptr::write(ctx_addr as *mut Ctx, ctx) };

    let stack_top = hole + hole_len;
    let phase2_addr = phase2 as *const () as u64 - self_start + hole;
    // Switches to the new stack and calls phase 2 in the relocated
    // copy; it never returns, so nothing of this frame is needed again.
    // SAFETY: see just above.
    unsafe {
        asm!(
            "mov rsp, {sp}",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            sp = in(reg) stack_top,
            f = in(reg) phase2_addr,
            in("rdi") ctx_addr,
            options(noreturn)
        )
    }
}

/// Reads a plan's header from `fd`.
fn read_header(fd: i32) -> PlanHeader {
    let mut hdr = PlanHeader::default();
    // SAFETY: PlanHeader is plain integers; any bytes are a valid value.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(
            (&mut hdr as *mut PlanHeader).cast::<u8>(),
            PlanHeader::SIZE,
        )
    };
    match hiber_sys::pread(fd, bytes, 0) {
        Ok(n) if n == PlanHeader::SIZE && hdr.magic == PLAN_MAGIC => hdr,
        _ => die("cannot read the restore plan", fd as u64),
    }
}

/// Forks the children of the process `plan_fd` restores, with their pids,
/// recursively (a child goes on with its own plan and forks its own
/// children), so each restored process has its restored parent again and
/// `waitpid` on it works. A child that was a session leader starts its
/// session; the others join their process group, set by both parent and
/// child as shells do, so whichever runs first the group exists. Returns the
/// plan of the process this code now is.
fn fork_tree(mut plan_fd: i32) -> i32 {
    'process: loop {
        let hdr = read_header(plan_fd);
        for i in 0..u64::from(hdr.n_children) {
            let mut c = PlanChild::default();
            // SAFETY: PlanChild is plain integers; any bytes are valid.
            let bytes = unsafe {
                core::slice::from_raw_parts_mut(
                    (&mut c as *mut PlanChild).cast::<u8>(),
                    core::mem::size_of::<PlanChild>(),
                )
            };
            let off = hdr.children_off + i * core::mem::size_of::<PlanChild>() as u64;
            match hiber_sys::pread(plan_fd, bytes, off) {
                Ok(n) if n == bytes.len() => {}
                _ => die("cannot read a child of the restore plan", i),
            }
            let want = c.pid;
            let mut args = hiber_sys::CloneArgs::process_with_pid(&want);
            // SAFETY: a fork; both sides go on with their own copy.
            let mut r = unsafe { hiber_sys::clone3_fork(&args) };
            if r.is_err() {
                // Not allowed to choose pids (restart with new ids), or the
                // pid is taken: the child gets a new pid.
                args.set_tid = 0;
                args.set_tid_size = 0;
                // SAFETY: as above.
                r = unsafe { hiber_sys::clone3_fork(&args) };
            }
            match r {
                Ok(0) if c.flags & CHILD_ZOMBIE != 0 => become_zombie(c.status),
                Ok(pid) if c.flags & CHILD_ZOMBIE != 0 => zombies_made(pid as i32),
                Ok(0) => {
                    if c.flags & CHILD_SETSID != 0 {
                        let _ = hiber_sys::setsid();
                    } else {
                        let _ = hiber_sys::setpgid(0, c.pgid);
                    }
                    plan_fd = c.plan_fd;
                    continue 'process;
                }
                Ok(pid) => {
                    if c.flags & CHILD_SETSID == 0 {
                        let _ = hiber_sys::setpgid(pid as i32, c.pgid);
                    }
                }
                Err(e) => die("cannot fork a child process", e.into_raw() as u64),
            }
        }
        return plan_fd;
    }
}

/// A child that had exited before the checkpoint: it ends again the same
/// way (exit code, or the signal that killed it, without a core dump) and
/// stays a zombie until the restored parent reaps it.
fn become_zombie(status: i32) -> ! {
    let sig = status & 0x7f;
    if sig != 0 && sig != 0x7f {
        // RLIMIT_CORE = 4: no core file for a signal that makes one.
        let _ = hiber_sys::setrlimit_zero(4);
        // Unblock, default the disposition, and die of it.
        hiber_sys::sigprocmask(SIG_SETMASK, 0);
        let _ = hiber_sys::kill_self_default(sig as u32);
    }
    hiber_sys::exit_group((status >> 8) & 0xff)
}

/// In the parent, once a zombie child exists: wait until it has exited
/// (without reaping it) and take back the SIGCHLD its exit raised; the
/// parent had already been told at the time (a SIGCHLD still pending then
/// is re-raised with the other pending signals).
fn zombies_made(pid: i32) {
    hiber_sys::wait_exited_nowait(pid);
    hiber_sys::take_pending(17);
}

/// Closes the descriptors the plan lists: the other processes' restore
/// files, inherited through the tree.
///
/// # Safety
/// `plan` must point at `hdr.total_len` readable bytes holding the plan.
unsafe fn close_fds(plan: u64, hdr: &PlanHeader) {
    let n = u64::from(hdr.n_close);
    if n == 0 {
        return;
    }
    let end = hdr.close_off.checked_add(n * 4);
    if !hdr.close_off.is_multiple_of(4) || end.is_none_or(|e| e > hdr.total_len) {
        die("restore plan's close list is out of bounds", hdr.close_off);
    }
    let first = (plan + hdr.close_off) as *const i32;
    // SAFETY: in bounds and aligned, checked above.
    let fds = unsafe { core::slice::from_raw_parts(first, n as usize) };
    for &fd in fds {
        let _ = hiber_sys::close(fd);
    }
}

fn read_exact(fd: i32, mut addr: u64, mut len: u64, mut off: u64) {
    while len > 0 {
        let chunk = len.min(1 << 30) as usize;
        // SAFETY: [addr, addr+len) is memory this restorer mapped writable.
        let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, chunk) };
        match hiber_sys::pread(fd, buf, off) {
            Ok(0) => die("unexpected end of file while reading", off),
            Ok(n) => {
                addr += n as u64;
                len -= n as u64;
                off += n as u64;
            }
            Err(hiber_sys::Errno::EINTR) => {}
            Err(e) => die("read failed", e.into_raw() as u64),
        }
    }
}

/// The plan's area table, bounds-checked against the plan length.
///
/// # Safety
/// `plan` must point at `hdr.total_len` readable bytes holding the plan.
unsafe fn plan_areas(plan: u64, hdr: &PlanHeader) -> &'static [PlanArea] {
    let size = core::mem::size_of::<PlanArea>() as u64;
    let end = hdr.areas_off.checked_add(u64::from(hdr.n_areas) * size);
    if end.is_none_or(|e| e > hdr.total_len) || !hdr.areas_off.is_multiple_of(8) {
        die("restore plan: area table out of bounds", hdr.areas_off);
    }
    // Bounds and alignment checked above; the memory stays mapped
    // for as long as the restorer runs.
    // SAFETY: see just above.
    unsafe {
        core::slice::from_raw_parts(
            (plan + hdr.areas_off) as *const PlanArea,
            hdr.n_areas as usize,
        )
    }
}

/// # Safety
/// As `plan_areas`.
unsafe fn plan_sources(plan: u64, hdr: &PlanHeader) -> &'static [PlanSource] {
    let size = core::mem::size_of::<PlanSource>() as u64;
    let end = hdr.sources_off.checked_add(u64::from(hdr.n_sources) * size);
    if end.is_none_or(|e| e > hdr.total_len) || !hdr.sources_off.is_multiple_of(8) {
        die("restore plan: source table out of bounds", hdr.sources_off);
    }
    // SAFETY: bounds and alignment checked above.
    unsafe {
        core::slice::from_raw_parts(
            (plan + hdr.sources_off) as *const PlanSource,
            hdr.n_sources as usize,
        )
    }
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b + blen && b < a + alen
}

/// Lowest address >= HOLE_FLOOR where `len` bytes miss every saved area and
/// every current mapping. Candidates are the floor and the end of every
/// range, which is enough: a lowest fit always starts at one of them.
fn find_hole(len: u64, areas: &[PlanArea]) -> u64 {
    let fits = |c: u64| -> bool {
        if c < HOLE_FLOOR || c + len > USER_TOP {
            return false;
        }
        !areas.iter().any(|a| overlaps(c, len, a.start, a.len))
            && !maps::current()
                .iter()
                .any(|m| overlaps(c, len, m.start, m.end - m.start))
    };
    let mut best = u64::MAX;
    let mut consider = |c: u64| {
        let c = page_up(c);
        if c < best && fits(c) {
            best = c;
        }
    };
    consider(HOLE_FLOOR);
    for a in areas {
        consider(a.start + a.len);
    }
    for m in maps::current() {
        consider(m.end);
    }
    if best == u64::MAX {
        die("no room for the restorer outside the saved areas", len);
    }
    best
}

/// Phase 2: runs from the copy in the hole, on the hole's stack.
extern "C" fn phase2(ctx: *mut Ctx) -> ! {
    // SAFETY: phase 1 wrote a Ctx there and nothing else aliases it.
    let ctx = unsafe { &mut *ctx };
    // SAFETY: phase 1 copied `plan_len` bytes of a checked plan to `plan`.
    let hdr = unsafe { &*(ctx.plan as *const PlanHeader) };

    // 1. Drop everything we came with, but the kernel's special mappings.
    for m in maps::current() {
        if m.special == maps::Kind::Other {
            // None of these ranges is used any more: we run from the
            // hole, on the hole's stack, and read the plan from the hole.
            // SAFETY: see just above.
            unsafe {
                let _ = hiber_sys::munmap(m.start, m.end - m.start);
            }
        }
    }

    // 2. Park the current vDSO/vvar block inside the hole, keeping its
    //    internal layout (vDSO code reaches vvar by fixed offsets).
    let (spec_lo, _) = maps::special_span();
    for m in maps::current() {
        if matches!(
            m.special,
            maps::Kind::Vdso | maps::Kind::Vvar | maps::Kind::VvarVclock
        ) {
            let len = m.end - m.start;
            let dst = ctx.special_tmp + (m.start - spec_lo);
            // SAFETY: the destination lies inside our own hole.
            unsafe { hiber_sys::mremap(m.start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) }
                .unwrap_or_else(|e| {
                    die("cannot move the vDSO out of the way", e.into_raw() as u64)
                });
        }
    }
    check_special_layout(hdr);

    // 3. Map every saved area at its address.
    // SAFETY: the plan was bounds-checked in phase 1 and copied verbatim.
    let (areas, sources) = unsafe { (plan_areas(ctx.plan, hdr), plan_sources(ctx.plan, hdr)) };
    for a in areas {
        map_area(a, sources);
    }

    // 4. Put the vDSO/vvar where the program's libc expects them.
    let (spec_lo, _) = maps::special_span();
    for s in &hdr.specials {
        if s.kind == SPECIAL_NONE {
            continue;
        }
        let Some(m) = maps::current().iter().find(|m| m.special as u32 == s.kind) else {
            continue;
        };
        let src = ctx.special_tmp + (m.start - spec_lo);
        // The destination was recorded as the vDSO/vvar of the saved
        // process and no saved area covers it.
        // SAFETY: see just above.
        unsafe { hiber_sys::mremap(src, s.len, s.len, MREMAP_MAYMOVE | MREMAP_FIXED, s.addr) }
            .unwrap_or_else(|e| {
                die(
                    "cannot move the vDSO to its saved address",
                    e.into_raw() as u64,
                )
            });
    }

    // 5. brk, arg and env ranges: without this, heap growth after restart
    //    would silently become non-contiguous (the kernel's brk is ours).
    if hdr.mm.start_code != 0 {
        let mut mm = hdr.mm;
        // With CAP_CHECKPOINT_RESTORE (root, or the restart's own user
        // namespace) /proc/self/exe becomes the program again; without it
        // the call is refused and retried keeping it (-1).
        // All addresses lie in areas mapped just above; `exe_fd` is
        // the program's executable, opened by `hiber restart`.
        // SAFETY: see just above.
        let mut r = unsafe { hiber_sys::prctl_set_mm_map(&mm) };
        if r.is_err() && mm.exe_fd != u32::MAX {
            mm.exe_fd = u32::MAX;
            // SAFETY: as above.
            r = unsafe { hiber_sys::prctl_set_mm_map(&mm) };
        }
        if let Err(e) = r {
            warn(
                "cannot restore the brk/mm layout; heap growth may move",
                e.into_raw() as u64,
            );
        }
    }

    ctx.handoff = Handoff {
        magic: HANDOFF_MAGIC,
        hole_start: ctx.hole_start,
        hole_len: ctx.hole_len,
        args_ptr: ctx.plan + hdr.args_off,
        args_len: hdr.args_len,
    };
    if hdr
        .args_off
        .checked_add(hdr.args_len)
        .is_none_or(|e| e > ctx.plan_len)
    {
        die("restore plan: argument block out of bounds", hdr.args_off);
    }
    let handoff = &ctx.handoff as *const Handoff as u64;
    // `entry` is the agent's restart entry inside the memory just
    // restored (recorded by the agent itself at checkpoint time); it takes
    // the handoff in rdi, keeps running on our stack and never returns.
    // SAFETY: see just above.
    unsafe {
        asm!("xor ebp, ebp", "call {f}", "ud2", f = in(reg) hdr.entry, in("rdi") handoff, options(noreturn))
    }
}

/// The saved vDSO/vvar must have the sizes and relative layout of the
/// current kernel's, or glibc's cached pointers would land in the wrong place.
fn check_special_layout(hdr: &PlanHeader) {
    let (cur_lo, _) = maps::special_span();
    let saved_lo = hdr
        .specials
        .iter()
        .filter(|s| s.kind != SPECIAL_NONE)
        .map(|s| s.addr)
        .min();
    let Some(saved_lo) = saved_lo else { return };
    for s in hdr.specials.iter().filter(|s| s.kind != SPECIAL_NONE) {
        match maps::current().iter().find(|m| m.special as u32 == s.kind) {
            Some(m) if m.end - m.start == s.len && m.start - cur_lo == s.addr - saved_lo => {}
            _ => die(
                "this kernel's vDSO layout differs from the image's (different kernel?)",
                s.addr,
            ),
        }
    }
}

fn map_area(a: &PlanArea, sources: &[PlanSource]) {
    if a.flags & AREA_SYSV != 0 {
        // shmat maps the whole segment from offset 0; `hiber restart` only
        // plans this for an area that is exactly that.
        let mut flags = 0;
        if a.prot & PROT_WRITE == 0 {
            flags |= SHM_RDONLY;
        }
        if a.prot & PROT_EXEC != 0 {
            flags |= SHM_EXEC;
        }
        // SAFETY: without SHM_REMAP the kernel refuses a range in use.
        match unsafe { hiber_sys::shmat(a.shared_fd, a.start, flags) } {
            Ok(p) if p as u64 == a.start => return,
            Ok(p) => die("System V segment attached at the wrong address", p as u64),
            Err(e) => die("cannot attach a System V segment", e.into_raw() as u64),
        }
    }
    if a.flags & AREA_SHARED != 0 {
        // SAFETY: NOREPLACE makes the kernel refuse instead of overwriting.
        match unsafe {
            hiber_sys::mmap(
                a.start,
                a.len,
                a.prot,
                MAP_SHARED | MAP_FIXED_NOREPLACE,
                a.shared_fd,
                a.shared_offset,
            )
        } {
            Ok(p) if p as u64 == a.start => return,
            Ok(p) => die("shared area mapped at the wrong address", p as u64),
            Err(e) => die("cannot map a shared area", e.into_raw() as u64),
        }
    }
    let mut flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
    if a.flags & AREA_NORESERVE != 0 {
        flags |= MAP_NORESERVE;
    }
    let first = a.first_source as usize;
    let Some(srcs) = first
        .checked_add(a.n_sources as usize)
        .and_then(|end| sources.get(first..end))
    else {
        die("restore plan: area sources out of bounds", a.start)
    };
    let prot0 = if srcs.is_empty() {
        a.prot
    } else {
        PROT_READ | PROT_WRITE
    };
    // SAFETY: NOREPLACE makes the kernel refuse instead of overwriting.
    match unsafe { hiber_sys::mmap(a.start, a.len, prot0, flags, -1, 0) } {
        Ok(p) if p as u64 == a.start => {}
        Ok(p) => die("area mapped at the wrong address", p as u64),
        Err(e) => {
            let mut m = Msg::<128>::new();
            m.str("cannot map saved area at ")
                .hex(a.start)
                .str(" errno");
            let _ = hiber_sys::write_all(2, m.as_bytes());
            die(" (the address is taken)", e.into_raw() as u64)
        }
    }
    for s in srcs {
        if s.addr < a.start || s.addr + s.len > a.start + a.len {
            die("restore plan: source outside its area", s.addr);
        }
        if s.how == SOURCE_MAP {
            // SAFETY: replaces part of the area mapped just above.
            unsafe {
                hiber_sys::mmap(
                    s.addr,
                    s.len,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_FIXED,
                    s.fd,
                    s.offset,
                )
            }
            .unwrap_or_else(|e| die("cannot map saved pages from the image", e.into_raw() as u64));
        } else {
            read_exact(s.fd, s.addr, s.len, s.offset);
        }
    }
    if prot0 != a.prot {
        // SAFETY: the area was mapped by us just above.
        unsafe { hiber_sys::mprotect(a.start, a.len, a.prot) }
            .unwrap_or_else(|e| die("cannot set an area's protection", e.into_raw() as u64));
    }
}

/// The precompiled `core` refers to the unwinding personality routine even
/// with `panic = "abort"`; nothing ever unwinds here, so it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
