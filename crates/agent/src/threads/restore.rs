//! Restart entry: bringing the threads back.
//!
//! The restorer maps the saved memory and calls [`hiber_restart_entry`] on
//! its own stack, in a single thread whose TLS register is not set. From
//! there (this module is async-signal-safe: raw system calls only, no
//! allocation, no locks, no TLS until the main thread's is installed):
//!
//! 1. the first thread becomes the program's main thread again: its TLS
//!    base, `struct pthread` tid, robust list, rseq area and alternate
//!    signal stack are re-installed;
//! 2. every other program thread is recreated with a raw `clone` (inline
//!    assembly: the child starts on another stack) on its own saved TLS,
//!    with `CLONE_PARENT_SETTID`/`CLONE_CHILD_CLEARTID` on glibc's tid word
//!    so `pthread_join` keeps working;
//! 3. the checkpoint thread is recreated the same way but starts afresh in
//!    `restart::checkpoint_thread_main` at the top of its old stack;
//! 4. program threads park until the checkpoint thread has restored the
//!    process-wide state and passed the restart barrier, then each returns
//!    into its interrupted code with `rt_sigreturn` on its saved frame.

use std::arch::asm;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

use hiber_sys::CloneArgs;
use hiber_sys::consts::*;
use hiber_sys::plan::{HANDOFF_MAGIC, Handoff};

use super::suspend::{self, Slot};

/// Temporary stack per recreated thread, used until its `rt_sigreturn`.
const TEMP_STACK: u64 = 64 << 10;

/// The checkpoint thread, as recorded when it started.
pub static CKPT_FS: AtomicU64 = AtomicU64::new(0);
pub static CKPT_TID_ADDR: AtomicU64 = AtomicU64::new(0);
pub static CKPT_STACK_TOP: AtomicU64 = AtomicU64::new(0);
/// The checkpoint thread's tid, as recorded when it started.
pub static CKPT_TID: AtomicU32 = AtomicU32::new(0);
/// Cleared once `clone3(set_tid)` is refused: the remaining threads get
/// new tids without trying.
static SET_TID_WORKS: AtomicU32 = AtomicU32::new(1);
/// Restarted in a namespace of our own with an ambient capability that
/// every thread drops before the program runs again.
static DROP_CAPS: AtomicU32 = AtomicU32::new(0);
const CAP_CHECKPOINT_RESTORE: u32 = 40;
/// The process's pid when it was checkpointed (its main thread's tid).
pub static SAVED_PID: AtomicU32 = AtomicU32::new(0);

/// Restart arguments copied out of the restorer's hole.
pub static mut ARGS: [u8; 65536] = [0; 65536];
pub static ARGS_LEN: AtomicUsize = AtomicUsize::new(0);
static HOLE: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static STACKS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// Set by the checkpoint thread when program threads may run again.
pub static GO: AtomicU32 = AtomicU32::new(0);
/// Threads that have left their temporary stacks.
pub static LEFT: AtomicU32 = AtomicU32::new(0);
/// Program threads recreated (including the main thread).
pub static RECREATED: AtomicU32 = AtomicU32::new(0);

fn fail(what: &str, v: u64) -> ! {
    let mut m = hiber_sys::fmt::Msg::<200>::new();
    m.str("hiber: restart failed: ")
        .str(what)
        .str(" (")
        .hex(v)
        .str(")\n");
    let _ = hiber_sys::write_all(2, m.as_bytes());
    hiber_sys::exit_group(112)
}

/// Entered from the restorer (see module docs). `rdi` = handoff block.
///
/// # Safety
/// Only the restorer calls this, once, with a valid handoff, in a process
/// whose memory is exactly the saved image.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hiber_restart_entry(h: *const Handoff) -> ! {
    // SAFETY: the restorer passes a pointer to a Handoff in its hole.
    let h = unsafe { *h };
    if h.magic != HANDOFF_MAGIC {
        fail("bad handoff from the restorer", h.magic);
    }
    let len = (h.args_len as usize).min(65536);
    // the args lie in the hole (still mapped); ARGS is only written
    // here, before any other thread exists.
    // SAFETY: see just above.
    unsafe {
        std::ptr::copy_nonoverlapping(
            h.args_ptr as *const u8,
            std::ptr::addr_of_mut!(ARGS).cast::<u8>(),
            len,
        )
    };
    ARGS_LEN.store(len, Relaxed);
    HOLE[0].store(h.hole_start, Relaxed);
    HOLE[1].store(h.hole_len, Relaxed);

    let n = suspend::NSLOTS.load(Relaxed).min(suspend::MAX_THREADS);
    let stacks_len = TEMP_STACK * (n as u64 + 1);
    // SAFETY: a fresh anonymous mapping chosen by the kernel.
    let stacks = unsafe {
        hiber_sys::mmap(
            0,
            stacks_len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .unwrap_or_else(|e| fail("cannot map thread stacks", e.into_raw() as u64))
        as u64;
    STACKS[0].store(stacks, Relaxed);
    STACKS[1].store(stacks_len, Relaxed);
    // Leave the hole's stack so the hole can go.
    // SAFETY: switches to the first temporary stack and never returns.
    unsafe {
        asm!("mov rsp, {sp}", "xor ebp, ebp", "call {f}", "ud2",
             sp = in(reg) stacks + TEMP_STACK, f = sym main_thread_restart, options(noreturn))
    }
}

extern "C" fn main_thread_restart() -> ! {
    // SAFETY: the hole holds only the restorer and its stack; we left both.
    unsafe {
        let _ = hiber_sys::munmap(HOLE[0].load(Relaxed), HOLE[1].load(Relaxed));
    }
    let slots = suspend::slots();
    let pid = SAVED_PID.load(Relaxed);
    let Some(main_idx) = slots.iter().position(|s| s.tid.load(Relaxed) == pid) else {
        fail("the image has no main thread", u64::from(pid))
    };
    let main = &slots[main_idx];
    // SAFETY: the saved TLS base of the main thread, in restored memory.
    if let Err(e) = unsafe { hiber_sys::arch_set_fs(main.fs_base.load(Relaxed)) } {
        fail("cannot set the main thread's TLS", e.into_raw() as u64);
    }
    let tid_addr = main.tid_addr.load(Relaxed);
    if tid_addr != 0 {
        // SAFETY: `tid_addr` is glibc's `struct pthread.tid` of this thread.
        unsafe {
            let tid = hiber_sys::set_tid_address(tid_addr);
            std::ptr::write_volatile(tid_addr as *mut u32, tid);
        }
    }
    // Ambient CAP_CHECKPOINT_RESTORE: restarted in a namespace of our own
    // to keep our ids; drop it once the threads exist. Root has the
    // capability anyway and keeps it.
    DROP_CAPS.store(
        u32::from(hiber_sys::ambient_cap_is_set(CAP_CHECKPOINT_RESTORE)),
        Relaxed,
    );
    per_thread_state(main);
    main.new_tid.store(hiber_sys::gettid(), Relaxed);
    RECREATED.store(1, Relaxed);

    let stacks = STACKS[0].load(Relaxed);
    let mut next_stack = 1u64;
    for (i, s) in slots.iter().enumerate() {
        if i == main_idx {
            continue;
        }
        let top = stacks + TEMP_STACK * (next_stack + 1);
        next_stack += 1;
        // TLS, tid word and stack all belong to this thread's saved
        // state or to the stacks mapped above.
        // SAFETY: see just above.
        let r = unsafe {
            clone_thread(
                s.fs_base.load(Relaxed),
                s.tid_addr.load(Relaxed),
                top,
                program_thread_start,
                i as u64,
                s.tid.load(Relaxed),
            )
        };
        match r {
            Ok(tid) => s.new_tid.store(tid, Relaxed),
            Err(e) => fail("cannot recreate a thread", e.into_raw() as u64),
        }
        RECREATED.fetch_add(1, Relaxed);
    }
    // The checkpoint thread restarts from the top of its own stack.
    // SAFETY: its saved TLS, tid word and stack, recorded when it started.
    let r = unsafe {
        clone_thread(
            CKPT_FS.load(Relaxed),
            CKPT_TID_ADDR.load(Relaxed),
            CKPT_STACK_TOP.load(Relaxed),
            crate::restart::checkpoint_thread_start,
            0,
            CKPT_TID.load(Relaxed),
        )
    };
    if let Err(e) = r {
        fail("cannot recreate the checkpoint thread", e.into_raw() as u64);
    }
    if DROP_CAPS.load(Relaxed) != 0 {
        hiber_sys::drop_capabilities();
    }
    park_then_return(main)
}

extern "C" fn program_thread_start(idx: u64) -> ! {
    let s = &suspend::slots()[idx as usize];
    drop_restart_capabilities();
    per_thread_state(s);
    park_then_return(s)
}

/// Threads created with their old tid drop the capability that allowed it.
pub fn drop_restart_capabilities() {
    if DROP_CAPS.load(Relaxed) != 0 {
        hiber_sys::drop_capabilities();
    }
}

/// Kernel state that is per thread and must be set by the thread itself.
fn per_thread_state(s: &Slot) {
    // The thread's name; for the main thread also the process's, which
    // would otherwise be the restorer's.
    let name = s.name_bytes();
    if name[0] != 0 {
        hiber_sys::set_thread_name(&name);
    }
    // On another machine the CPUs may not exist: the thread then keeps the
    // default affinity.
    if let Some(mask) = s.affinity() {
        let _ = hiber_sys::sched_setaffinity_self(&mask);
    }
    // each value is this thread's own, as saved at the checkpoint,
    // pointing into restored memory.
    // SAFETY: see just above.
    unsafe {
        let head = s.robust_head.load(Relaxed);
        if head != 0 {
            let _ = hiber_sys::set_robust_list(head, s.robust_len.load(Relaxed));
        }
        let rseq = s.rseq_area();
        if rseq != 0 {
            // The kernel refuses an area whose critical-section pointer is set.
            std::ptr::write_volatile((rseq + 8) as *mut u64, 0);
            let _ = hiber_sys::rseq_register(rseq, suspend::rseq_len());
        }
        let size = s.alt_size.load(Relaxed);
        let flags = s.alt_flags.load(Relaxed);
        // SS_DISABLE = 2; SS_ONSTACK (1) is a status, not a settable flag.
        if flags & 2 == 0 && size != 0 {
            let ss = hiber_sys::StackT {
                sp: s.alt_sp.load(Relaxed),
                flags: (flags & !1) as i32,
                _pad: 0,
                size,
            };
            let _ = hiber_sys::sigaltstack_set(&ss);
        }
    }
}

fn park_then_return(s: &Slot) -> ! {
    while GO.load(Acquire) == 0 {
        hiber_sys::futex_wait(&GO, 0);
    }
    let uc = s.uc.load(Relaxed);
    // `uc` is the thread's saved signal frame (ucontext) on its own
    // restored stack; rt_sigreturn reloads every register, the FPU state and
    // the signal mask from it. LEFT is bumped with no stack use after it.
    // SAFETY: see just above.
    unsafe {
        asm!(
            "lock inc dword ptr [{left}]",
            "mov rsp, {uc}",
            "mov eax, 15",
            "syscall",
            "ud2",
            left = in(reg) LEFT.as_ptr(),
            uc = in(reg) uc,
            options(noreturn)
        )
    }
}

/// Frees the temporary stacks once every program thread has left them.
pub fn release_temp_stacks() {
    let want = RECREATED.load(Acquire);
    for _ in 0..2000 {
        if LEFT.load(Acquire) >= want {
            // SAFETY: no thread runs on these stacks any more.
            unsafe {
                let _ = hiber_sys::munmap(STACKS[0].load(Relaxed), STACKS[1].load(Relaxed));
            }
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Creates a thread of this process running `entry(arg)` on `stack_top`
/// with TLS `fs_base`; the kernel writes its tid to `tid_addr` and clears it
/// (waking futex waiters) when the thread exits, as for a pthread. With
/// CAP_CHECKPOINT_RESTORE the thread gets tid `want_tid` through
/// `clone3(set_tid)`; if that is refused or the tid is taken, the kernel
/// picks one.
///
/// # Safety
/// `fs_base`/`tid_addr` must be a valid thread descriptor not used by any
/// running thread; `stack_top` 16-byte aligned top of unused memory.
unsafe fn clone_thread(
    fs_base: u64,
    tid_addr: u64,
    stack_top: u64,
    entry: extern "C" fn(u64) -> !,
    arg: u64,
    want_tid: u32,
) -> Result<u32, hiber_sys::Errno> {
    let tid = want_tid as i32;
    let top = stack_top & !15;
    let mut args = CloneArgs {
        flags: CLONE_THREAD_FLAGS,
        child_tid: tid_addr,
        parent_tid: tid_addr,
        stack: top - 4096,
        stack_size: 4096,
        tls: fs_base,
        ..CloneArgs::default()
    };
    if SET_TID_WORKS.load(Relaxed) != 0 && want_tid != 0 {
        args.set_tid = &tid as *const i32 as u64;
        args.set_tid_size = 1;
    }
    loop {
        let ret: i64;
        // clone3(2) with a filled clone_args (`tid` outlives the
        // call); the child starts on `stack + stack_size` with the parent's
        // registers, finds `entry`/`arg` in r12/r13 and calls it without
        // touching the parent's stack.
        // SAFETY: see just above.
        unsafe {
            asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, r13",
                "call r12",
                "ud2",
                "2:",
                inlateout("rax") 435i64 => ret,
                in("rdi") &args as *const CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") entry as usize,
                in("r13") arg,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        if ret >= 0 {
            return Ok(ret as u32);
        }
        if args.set_tid_size == 0 {
            return Err(hiber_sys::Errno::new(-ret as i32));
        }
        // Not allowed (no CAP_CHECKPOINT_RESTORE): stop asking for tids.
        // Taken (by another process since): a new tid for this thread.
        if ret == -(libc::EPERM as i64) {
            SET_TID_WORKS.store(0, Relaxed);
        }
        args.set_tid = 0;
        args.set_tid_size = 0;
    }
}

/// Resets the restart rendezvous words before memory is saved, so that a
/// restart from this image starts with every thread parked.
pub fn prepare_for_image(pid: u32) {
    GO.store(0, Relaxed);
    LEFT.store(0, Relaxed);
    RECREATED.store(0, Relaxed);
    SAVED_PID.store(pid, Relaxed);
}
