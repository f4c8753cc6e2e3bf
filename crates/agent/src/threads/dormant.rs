//! A process whose checkpoint thread is not started yet ("dormant").
//!
//! Most fork children exec at once, and most exec'd programs of a shell
//! pipeline live a few milliseconds. Starting the checkpoint thread there
//! costs more than anything else the agent does: creating the thread, and
//! then having `exec` or `exit` stop it again (on this machine kind, a
//! thread in the child of a fork that execs adds a third to the bare cost
//! of fork+exec+wait). So a fork child that took over its parent's spare
//! connection, and an exec'd image that took over its predecessor's, start
//! without one. Their coordinator socket is set for signal-driven I/O: the
//! first message the coordinator sends (a checkpoint request) raises the
//! checkpoint signal, with `si_code` `POLL_IN`, on the process's thread.
//!
//! The signal handler then starts the checkpoint thread itself when that is
//! safe. The process has a single thread (the `pthread_create` wrapper
//! starts the checkpoint thread before any other), so only the interrupted
//! code can hold a lock `pthread_create` needs (glibc's malloc, its stack
//! cache and TLS locks, all taken inside libc or the dynamic loader only).
//! It is safe when the interrupted code is
//! - outside libc, the dynamic loader and the agent, and not inside a signal
//!   handler (which could itself have interrupted libc: the stack above the
//!   interrupted frame is searched for glibc's signal return trampoline), or
//! - in libc at a blocking system call (interrupted with `EINTR`, or about
//!   to (re)start one of [`BLOCKING`]), which libc never makes while holding
//!   those locks.
//!
//! Otherwise the handler only records that the thread is wanted: the next
//! agent wrapper the program calls starts it in a normal context, and the
//! coordinator asks a dormant process again every 20 ms (each message
//! raises the signal again), so a program busy in libc is caught outside
//! it soon after. Anything that needs the thread for sure (creating a
//! thread, the C API) starts it first.
//!
//! Code here that runs in the handler is async-signal-safe: raw system
//! calls, atomics, no allocation, no locks, no panics.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*};

use crate::checkpoint::Link;

static DORMANT: AtomicBool = AtomicBool::new(false);
/// A checkpoint request came while the thread could not be started.
static WANTED: AtomicBool = AtomicBool::new(false);
/// The boxed `Link` the thread will serve, made ready in a normal context.
static LINK: AtomicPtr<Link> = AtomicPtr::new(std::ptr::null_mut());
/// The socket armed for signal-driven I/O.
static FD: AtomicUsize = AtomicUsize::new(usize::MAX);
/// glibc's `pthread_create`, resolved in a normal context.
static CREATE: AtomicUsize = AtomicUsize::new(0);
/// Executable ranges: libc, the dynamic loader, the agent.
static RANGES: [[AtomicUsize; 2]; 3] = [const { [const { AtomicUsize::new(0) }; 2] }; 3];
const LIBC: usize = 0;
const LDSO: usize = 1;
const AGENT: usize = 2;
/// glibc's signal return trampoline (`sa_restorer` of handlers it installs).
static RESTORER: AtomicUsize = AtomicUsize::new(0);

/// System calls that block, which libc never makes while holding one of the
/// locks `pthread_create` takes (x86-64 numbers).
const BLOCKING: &[u64] = &[
    0,   // read
    1,   // write
    7,   // poll
    17,  // pread64
    19,  // readv
    20,  // writev
    23,  // select
    34,  // pause
    35,  // nanosleep
    42,  // connect
    43,  // accept
    44,  // sendto
    45,  // recvfrom
    46,  // sendmsg
    47,  // recvmsg
    61,  // wait4
    65,  // semop
    69,  // msgsnd
    70,  // msgrcv
    72,  // fcntl (F_SETLKW)
    73,  // flock
    128, // rt_sigtimedwait
    130, // rt_sigsuspend
    202, // futex
    220, // semtimedop
    230, // clock_nanosleep
    232, // epoll_wait
    242, // mq_timedsend
    243, // mq_timedreceive
    247, // waitid
    270, // pselect6
    271, // ppoll
    281, // epoll_pwait
    288, // accept4
    295, // preadv
    441, // epoll_pwait2
];

/// Goes dormant with `link` (a connection on descriptor `fd`) instead of
/// starting the checkpoint thread. `false` if that cannot be set up: the
/// caller then starts the thread at once.
pub fn enter(link: Link, fd: i32) -> Result<(), Link> {
    if !prepare() {
        return Err(link);
    }
    let sig = crate::config::get().ckpt_signal;
    // SAFETY: fcntl on our own socket with integer arguments.
    let armed = unsafe {
        libc::fcntl(fd, libc::F_SETOWN, hiber_sys::getpid() as c_int) == 0
            && libc::fcntl(fd, F_SETSIG, sig as c_int) == 0
            && {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC) == 0
            }
    };
    if !armed {
        return Err(link);
    }
    LINK.store(Box::into_raw(Box::new(link)), Release);
    FD.store(fd as usize, Relaxed);
    WANTED.store(false, Relaxed);
    DORMANT.store(true, Release);
    // A message that arrived before the socket was armed raised nothing.
    let mut queued: c_int = 0;
    // SAFETY: FIONREAD into a local.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 || queued > 0 {
        start();
    }
    Ok(())
}

/// Resolves what the handler will need (once per program image; a fork
/// parent calls it before forking, so that its children inherit it).
pub fn prepare() -> bool {
    if CREATE.load(Relaxed) == 0 {
        type PthreadCreateFn = unsafe extern "C" fn(
            *mut libc::pthread_t,
            *const libc::pthread_attr_t,
            extern "C" fn(*mut c_void) -> *mut c_void,
            *mut c_void,
        ) -> c_int;
        let f = crate::next::real!("pthread_create", PthreadCreateFn);
        CREATE.store(f as usize, Relaxed);
    }
    if RESTORER.load(Relaxed) == 0 {
        let sig = crate::config::get().ckpt_signal as c_int;
        // SAFETY: reads back our own handler's sigaction into a local.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if crate::signals::real_sigaction(sig, std::ptr::null(), &mut old) == 0 {
                RESTORER.store(old.sa_restorer.map_or(0, |f| f as usize), Relaxed);
            }
        }
    }
    if RANGES[LIBC][1].load(Relaxed) == 0 {
        // SAFETY: dl_iterate_phdr with a callback that only reads the headers it is given.
        unsafe { libc::dl_iterate_phdr(Some(record_object), std::ptr::null_mut()) };
    }
    CREATE.load(Relaxed) != 0
        && RESTORER.load(Relaxed) != 0
        && RANGES[LIBC][1].load(Relaxed) != 0
        && RANGES[AGENT][1].load(Relaxed) != 0
}

unsafe extern "C" fn record_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    _data: *mut c_void,
) -> c_int {
    // SAFETY: the loader passes a valid dl_phdr_info for the call.
    let info = unsafe { &*info };
    let name = if info.dlpi_name.is_null() {
        &b""[..]
    } else {
        // SAFETY: a NUL-terminated path owned by the loader.
        unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    let which = if base.starts_with(b"libc.so") {
        LIBC
    } else if base.starts_with(b"ld-linux") {
        LDSO
    } else if base == b"libhiber.so" || contains(record_object as *const () as usize, info) {
        AGENT
    } else {
        return 0;
    };
    let (lo, hi) = exec_range(info);
    RANGES[which][0].store(lo, Relaxed);
    RANGES[which][1].store(hi, Relaxed);
    0
}

/// The lowest and highest address of `info`'s executable segments.
fn exec_range(info: &libc::dl_phdr_info) -> (usize, usize) {
    let (mut lo, mut hi) = (usize::MAX, 0);
    for i in 0..info.dlpi_phnum as usize {
        // SAFETY: `dlpi_phdr` has `dlpi_phnum` entries.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
            lo = lo.min(start);
            hi = hi.max(start + ph.p_memsz as usize);
        }
    }
    if hi == 0 { (0, 0) } else { (lo, hi) }
}

fn contains(addr: usize, info: &libc::dl_phdr_info) -> bool {
    let (lo, hi) = exec_range(info);
    (lo..hi).contains(&addr)
}

fn in_range(which: usize, addr: u64) -> bool {
    let (lo, hi) = (
        RANGES[which][0].load(Relaxed),
        RANGES[which][1].load(Relaxed),
    );
    (lo..hi).contains(&(addr as usize))
}

/// In the checkpoint signal handler, for a signal raised by the socket
/// (`si_code` `POLL_*`). Async-signal-safe.
pub fn on_signal(uc: *mut c_void) {
    // A sleep or wait this signal cut short is retried by its wrapper, as
    // after a checkpoint (the program never sees this signal).
    super::suspend::EPOCH.fetch_add(1, AcqRel);
    if !DORMANT.load(Acquire) {
        return;
    }
    WANTED.store(true, Release);
    if safe_to_start(uc) {
        // pthread_create may set errno, which belongs to the interrupted
        // code.
        // SAFETY: this thread's errno location.
        let errno = unsafe { *libc::__errno_location() };
        start();
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }
}

/// Whether the signal's `si_code` says the socket raised it.
pub fn is_socket_signal(code: c_int) -> bool {
    (POLL_IN..=POLL_HUP).contains(&code)
}

/// A safe point in a wrapper: starts the thread if a request is waiting.
pub fn at_safe_point() {
    if DORMANT.load(Acquire) && WANTED.load(Acquire) {
        start();
    }
}

/// In a fork child, first thing: the parent's dormant state (its socket,
/// the connection its thread would serve) is not ours. The copy of the
/// parent's pending connection is forgotten, not dropped: dropping would
/// close a descriptor number that means something else here.
pub fn forget_in_child() {
    DORMANT.store(false, Release);
    WANTED.store(false, Relaxed);
    LINK.store(std::ptr::null_mut(), Release);
    FD.store(usize::MAX, Relaxed);
}

/// Before an exec: a message arriving before the next image installs its
/// handler would raise a signal whose default action ends the process. The
/// socket goes back to plain I/O (a next image that takes it over arms it
/// again). Returns whether it was armed.
pub fn before_exec() -> bool {
    if DORMANT.load(Acquire) {
        set_async(false);
        return true;
    }
    false
}

/// The exec failed: this image stays dormant on its socket.
pub fn exec_failed() {
    if DORMANT.load(Acquire) {
        set_async(true);
        // A message may have come meanwhile.
        let mut queued: c_int = 0;
        let fd = FD.load(Relaxed) as i32;
        // SAFETY: FIONREAD into a local.
        if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 || queued > 0 {
            start();
        }
    }
}

fn set_async(on: bool) {
    let fd = FD.load(Relaxed) as i32;
    if let Ok(fl) = hiber_sys::fcntl(fd, libc::F_GETFL as u32, 0) {
        let fl = fl as u64;
        let new = if on {
            fl | libc::O_ASYNC as u64
        } else {
            fl & !(libc::O_ASYNC as u64)
        };
        let _ = hiber_sys::fcntl(fd, libc::F_SETFL as u32, new);
    }
}

/// Starts the thread now, whatever came (before a second thread exists,
/// or before the C API waits on the coordinator).
pub fn wake() {
    if DORMANT.load(Acquire) {
        start();
    }
}

/// [`wake`], for `shim.c` (a thread made by `clone` itself).
#[unsafe(no_mangle)]
pub extern "C" fn hiber_internal_wake() {
    wake();
}

/// See the module docs. Async-signal-safe.
fn safe_to_start(uc: *mut c_void) -> bool {
    // SAFETY: the kernel's ucontext for this signal.
    let g = unsafe { &(*uc.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let (rip, rsp, rax) = (
        g[libc::REG_RIP as usize] as u64,
        g[libc::REG_RSP as usize] as u64,
        g[libc::REG_RAX as usize] as u64,
    );
    if in_range(AGENT, rip) || in_range(LDSO, rip) {
        return false;
    }
    if in_range(LIBC, rip) {
        return at_blocking_syscall(rip, rax);
    }
    !in_signal_handler(rsp)
}

const SYSCALL: [u8; 2] = [0x0f, 0x05];
/// `fcntl` command: the signal to send for I/O readiness (instead of SIGIO;
/// then with `si_code` `POLL_*` and the descriptor).
const F_SETSIG: c_int = 10;
/// `si_code` range of such signals (`POLL_IN` .. `POLL_HUP`).
const POLL_IN: c_int = 1;
const POLL_HUP: c_int = 6;

/// libc code interrupted in, or about to (re)start, a blocking system
/// call.
fn at_blocking_syscall(rip: u64, rax: u64) -> bool {
    let mut before = [0u8; 2];
    let mut at = [0u8; 2];
    let ok_before = read_own(rip - 2, &mut before) && before == SYSCALL;
    let ok_at = read_own(rip, &mut at) && at == SYSCALL;
    (ok_before && rax as i64 == -(libc::EINTR as i64)) || (ok_at && BLOCKING.contains(&rax))
}

/// Whether the stack above `rsp` holds glibc's signal return address, i.e.
/// the interrupted code runs in a signal handler. Reads at most 128 KiB,
/// through `process_vm_readv` so that the end of the stack mapping ends the
/// search instead of faulting.
fn in_signal_handler(rsp: u64) -> bool {
    let restorer = RESTORER.load(Relaxed) as u64;
    let mut buf = [0u64; 512];
    let mut addr = rsp & !7;
    for _ in 0..32 {
        let bytes = std::mem::size_of_val(&buf);
        // SAFETY: viewing the local array as bytes.
        let b = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes) };
        let n = read_own_partial(addr, b);
        for (i, w) in buf[..n / 8].iter().enumerate() {
            if *w == restorer && is_signal_frame(addr + 8 * i as u64) {
                return true;
            }
        }
        if n < bytes {
            return false;
        }
        addr += bytes as u64;
    }
    false
}

/// Whether the word at `at` (glibc's return trampoline) starts a signal
/// frame: a `ucontext_t` follows, with small flags, no link, and the
/// interrupted stack pointer above the frame. A stray copy of the address
/// (a `struct sigaction` the program keeps) is not taken for one.
fn is_signal_frame(at: u64) -> bool {
    // restorer, uc_flags, uc_link, uc_stack (3 words), gregs[23].
    let mut w = [0u64; 29];
    // SAFETY: viewing the local array as bytes.
    let b = unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr().cast::<u8>(), 29 * 8) };
    if !read_own(at, b) {
        return false;
    }
    let (flags, link, saved_rsp) = (w[1], w[2], w[6 + libc::REG_RSP as usize]);
    flags < 0x100 && link == 0 && saved_rsp > at
}

fn read_own(addr: u64, out: &mut [u8]) -> bool {
    read_own_partial(addr, out) == out.len()
}

/// Reads our own memory at `addr` without faulting; returns the bytes read.
fn read_own_partial(addr: u64, out: &mut [u8]) -> usize {
    hiber_sys::read_own_memory(addr, out).unwrap_or(0)
}

/// Starts the checkpoint thread, once. Async-signal-safe: the socket goes
/// back to plain I/O, and `pthread_create` gets a ready argument.
fn start() {
    if DORMANT
        .compare_exchange(true, false, AcqRel, Relaxed)
        .is_err()
    {
        return;
    }
    set_async(false);
    let link = LINK.swap(std::ptr::null_mut(), AcqRel);
    if link.is_null() {
        return;
    }
    type PthreadCreateFn = unsafe extern "C" fn(
        *mut libc::pthread_t,
        *const libc::pthread_attr_t,
        extern "C" fn(*mut c_void) -> *mut c_void,
        *mut c_void,
    ) -> c_int;
    // CREATE holds glibc's pthread_create (set by `prepare`, which
    // `enter` checked); the attribute object lives on this stack for the
    // call; the thread takes ownership of `link`.
    // SAFETY: see just above.
    let r = unsafe {
        let create = std::mem::transmute::<usize, PthreadCreateFn>(CREATE.load(Relaxed));
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, crate::checkpoint::CKPT_STACK);
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut tid: libc::pthread_t = 0;
        let r = create(&mut tid, &attr, crate::checkpoint::thread_main, link.cast());
        libc::pthread_attr_destroy(&mut attr);
        r
    };
    if r != 0 {
        let _ = hiber_sys::write_all(
            2,
            b"hiber: cannot start the checkpoint thread; no checkpoints for this process\n",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_boundaries_in_code() {
        // nop; syscall; nop
        let code = [0x90u8, 0x0f, 0x05, 0x90];
        let base = code.as_ptr() as u64;
        let eintr = -(libc::EINTR as i64) as u64;
        assert!(
            at_blocking_syscall(base + 3, eintr),
            "interrupted with EINTR"
        );
        assert!(!at_blocking_syscall(base + 3, 0), "returned normally");
        assert!(at_blocking_syscall(base + 1, 0), "about to (re)start read");
        assert!(
            !at_blocking_syscall(base + 1, 9),
            "mmap is not a blocking call"
        );
        assert!(!at_blocking_syscall(base + 2, eintr), "not after a syscall");
    }

    #[test]
    fn signal_return_address_found_above_the_stack_pointer() {
        const MAGIC: u64 = 0x5eed_f00d_0bad_cafe;
        RESTORER.store(MAGIC as usize, Relaxed);
        let mut frames = vec![0u64; 4096];
        let start = frames.as_ptr() as u64;
        assert!(!in_signal_handler(start), "no trampoline yet");
        frames[3000] = MAGIC;
        assert!(!in_signal_handler(start), "a stray copy is no frame");
        // A frame: flags, no link, stack, saved registers with the
        // interrupted stack pointer above.
        frames[3001] = 7;
        frames[3006 + libc::REG_RSP as usize] = start + 8 * 4000;
        assert!(in_signal_handler(start));
        // Unmapped memory ends the search instead of faulting.
        assert_eq!(read_own_partial(8, &mut [0u8; 16]), 0);
    }
}
