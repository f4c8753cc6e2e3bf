//! Hiding the checkpoint signal from the program.
//!
//! The program must not be able to catch, ignore, block or wait for the
//! signal hiber uses to stop its threads (a blocked signal would make a
//! checkpoint wait for ever; a replaced handler would crash it). These
//! wrappers keep what the program asked for that signal as a "virtual"
//! disposition and mask bit, so it reads back what it set, while the real
//! ones stay hiber's. A program that needs the signal itself can move
//! hiber's elsewhere with `hiber launch --ckpt-signal N`.
//!
//! Calls through the raw `syscall()` entry are not covered.

use std::ffi::c_int;
use std::sync::Mutex;

use crate::config;
use crate::next::real;

/// The program's own idea of the checkpoint signal's disposition.
static VIRTUAL: Mutex<Option<libc::sigaction>> = Mutex::new(None);

fn ckpt_sig() -> c_int {
    config::get().ckpt_signal as c_int
}

fn active() -> bool {
    config::get().enabled
}

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type MaskFn = unsafe extern "C" fn(c_int, *const libc::sigset_t, *mut libc::sigset_t) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
type SigwaitFn = unsafe extern "C" fn(*const libc::sigset_t, *mut c_int) -> c_int;
type SigwaitinfoFn = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t) -> c_int;
type SigtimedwaitFn = unsafe extern "C" fn(
    *const libc::sigset_t,
    *mut libc::siginfo_t,
    *const libc::timespec,
) -> c_int;
type SignalfdFn = unsafe extern "C" fn(c_int, *const libc::sigset_t, c_int) -> c_int;

/// A copy of `set` without the checkpoint signal (None for a null set).
fn without_ckpt(set: *const libc::sigset_t) -> Option<libc::sigset_t> {
    if set.is_null() {
        return None;
    }
    // SAFETY: the caller's set is a valid sigset_t; we copy it.
    let mut copy = unsafe { *set };
    // SAFETY: valid set and signal number.
    unsafe { libc::sigdelset(&mut copy, ckpt_sig()) };
    Some(copy)
}

/// glibc's own `sigaction`, for the agent (calls from inside this library
/// would otherwise bind to the wrapper below).
///
/// # Safety
/// Same contract as libc's `sigaction`.
pub unsafe fn real_sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let f = real!("sigaction", SigactionFn);
    // SAFETY: forwarded arguments.
    unsafe { f(sig, act, old) }
}

/// # Safety
/// Same contract as libc's `sigaction`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let f = real!("sigaction", SigactionFn);
    if !active() || sig != ckpt_sig() {
        // SAFETY: forwarded arguments.
        return unsafe { f(sig, act, old) };
    }
    let mut v = VIRTUAL.lock().unwrap_or_else(|e| e.into_inner());
    if !old.is_null() {
        // SAFETY: caller-provided out pointer; a zeroed sigaction is SIG_DFL.
        unsafe { *old = v.unwrap_or_else(|| std::mem::zeroed()) };
    }
    if !act.is_null() {
        // SAFETY: caller-provided sigaction, copied.
        *v = Some(unsafe { *act });
    }
    0
}

/// # Safety
/// Same contract as libc's `signal`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if !active() || sig != ckpt_sig() {
        let f = real!("signal", SignalFn);
        // SAFETY: forwarded arguments.
        return unsafe { f(sig, handler) };
    }
    // SAFETY: zeroed sigaction is valid; we only set the handler.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: zeroed out value is valid.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals.
    unsafe { sigaction(sig, &act, &mut old) };
    old.sa_sigaction
}

fn mask_call(f: MaskFn, how: c_int, set: *const libc::sigset_t, old: *mut libc::sigset_t) -> c_int {
    if !active() {
        // SAFETY: forwarded arguments.
        return unsafe { f(how, set, old) };
    }
    let filtered = without_ckpt(set);
    let p = filtered
        .as_ref()
        .map_or(std::ptr::null(), |s| s as *const libc::sigset_t);
    // SAFETY: forwarded, with the checkpoint signal removed from the set.
    unsafe { f(how, p, old) }
}

/// # Safety
/// Same contract as libc's `sigprocmask`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigprocmask(
    how: c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> c_int {
    mask_call(real!("sigprocmask", MaskFn), how, set, old)
}

/// # Safety
/// Same contract as libc's `pthread_sigmask`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> c_int {
    mask_call(real!("pthread_sigmask", MaskFn), how, set, old)
}

/// Wait-for-signal calls: the checkpoint signal is never in the waited set
/// (it would be consumed instead of stopping the thread).
macro_rules! filtered_set {
    ($set:expr) => {{ if !active() { None } else { without_ckpt($set) } }};
}

fn pick(orig: *const libc::sigset_t, f: &Option<libc::sigset_t>) -> *const libc::sigset_t {
    f.as_ref().map_or(orig, |s| s as *const libc::sigset_t)
}

/// # Safety
/// Same contract as libc's `sigwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigwait(set: *const libc::sigset_t, sig: *mut c_int) -> c_int {
    let f = real!("sigwait", SigwaitFn);
    let s = filtered_set!(set);
    // SAFETY: forwarded arguments.
    unsafe { f(pick(set, &s), sig) }
}

/// # Safety
/// Same contract as libc's `sigwaitinfo`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigwaitinfo(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
) -> c_int {
    let f = real!("sigwaitinfo", SigwaitinfoFn);
    let s = filtered_set!(set);
    // SAFETY: forwarded arguments.
    unsafe { f(pick(set, &s), info) }
}

/// # Safety
/// Same contract as libc's `sigtimedwait`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    ts: *const libc::timespec,
) -> c_int {
    let f = real!("sigtimedwait", SigtimedwaitFn);
    let s = filtered_set!(set);
    // SAFETY: forwarded arguments.
    unsafe { f(pick(set, &s), info, ts) }
}

/// # Safety
/// Same contract as libc's `signalfd`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signalfd(fd: c_int, set: *const libc::sigset_t, flags: c_int) -> c_int {
    let f = real!("signalfd", SignalfdFn);
    let s = filtered_set!(set);
    // SAFETY: forwarded arguments.
    unsafe { f(fd, pick(set, &s), flags) }
}

/// The temporary mask of `sigsuspend` must not block the checkpoint signal.
pub fn sigsuspend_mask(mask: *const libc::sigset_t) -> Option<libc::sigset_t> {
    filtered_set!(mask)
}
