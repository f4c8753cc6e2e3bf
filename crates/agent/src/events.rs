//! Checkpoint events, delivered to the program's callbacks
//! (`hiber_register_callback`) and to C plugins (`hiber launch
//! --with-plugin lib.so`, which export `hiber_plugin_event`). All run on
//! the checkpoint thread, in this order: PRE_SUSPEND (threads running),
//! PRE_CHECKPOINT (threads stopped: async-signal-safe code only), then
//! RESUME, or RESTART in a restarted process.
//!
//! During PRE_SUSPEND, RESUME and RESTART the coordinator link is lent to
//! `hiber_barrier` and `hiber_kv_*` through [`with_link`].

use std::ffi::{CString, c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

use crate::checkpoint::Link;
use crate::log;

pub const PRE_CHECKPOINT: c_int = 1;
pub const RESUME: c_int = 2;
pub const RESTART: c_int = 3;
pub const PRE_SUSPEND: c_int = 4;

type PluginFn = unsafe extern "C" fn(c_int);
pub type CallbackFn = unsafe extern "C" fn(c_int, *mut c_void);

const MAX_PLUGINS: usize = 16;
static PLUGINS: [AtomicUsize; MAX_PLUGINS] = [const { AtomicUsize::new(0) }; MAX_PLUGINS];

const MAX_CALLBACKS: usize = 64;
/// (function, user data) pairs; a zero function is a free slot.
static CALLBACKS: [(AtomicUsize, AtomicUsize); MAX_CALLBACKS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_CALLBACKS];

/// The link lent to barrier/kv calls made from inside an event.
static LINK: AtomicPtr<Link> = AtomicPtr::new(std::ptr::null_mut());
static LINK_LOCK: Mutex<()> = Mutex::new(());

/// Loads the plugins named in `$HIBER_PLUGINS` (colon-separated).
pub fn load_plugins() {
    let Ok(list) = std::env::var("HIBER_PLUGINS") else {
        return;
    };
    let mut n = 0;
    for path in list.split(':').filter(|p| !p.is_empty()) {
        let Ok(c) = CString::new(path) else { continue };
        // dlopen/dlsym with NUL-terminated strings; the plugin's
        // entry point has the documented signature.
        // SAFETY: see just above.
        unsafe {
            let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                let err = std::ffi::CStr::from_ptr(libc::dlerror())
                    .to_string_lossy()
                    .into_owned();
                log::warn(&format!("cannot load plugin {path}: {err}"));
                continue;
            }
            let f = libc::dlsym(h, c"hiber_plugin_event".as_ptr());
            if f.is_null() {
                log::warn(&format!("plugin {path} has no hiber_plugin_event"));
                continue;
            }
            if n < MAX_PLUGINS {
                PLUGINS[n].store(f as usize, Relaxed);
                n += 1;
            }
        }
    }
}

pub fn register_callback(f: usize, data: usize) -> Option<usize> {
    for (i, (cf, cd)) in CALLBACKS.iter().enumerate() {
        if cf.compare_exchange(0, usize::MAX, AcqRel, Relaxed).is_ok() {
            cd.store(data, Relaxed);
            cf.store(f, Release);
            return Some(i);
        }
    }
    None
}

pub fn unregister_callback(i: usize) -> bool {
    CALLBACKS
        .get(i)
        .is_some_and(|(cf, _)| cf.swap(0, AcqRel) != 0)
}

fn plugins(ev: c_int) {
    for p in &PLUGINS {
        let f = p.load(Acquire);
        if f != 0 {
            // SAFETY: a `hiber_plugin_event` found by dlsym.
            unsafe { std::mem::transmute::<usize, PluginFn>(f)(ev) };
        }
    }
}

fn callbacks(ev: c_int) {
    for (cf, cd) in &CALLBACKS {
        let f = cf.load(Acquire);
        if f != 0 && f != usize::MAX {
            // registered through hiber_register_callback with the
            // documented signature.
            // SAFETY: see just above.
            unsafe {
                std::mem::transmute::<usize, CallbackFn>(f)(ev, cd.load(Relaxed) as *mut c_void)
            };
        }
    }
}

/// Runs `f` with `link` available to `hiber_barrier`/`hiber_kv_*`.
fn lend<R>(link: &mut Link, f: impl FnOnce() -> R) -> R {
    let _g = LINK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    LINK.store(link as *mut Link, Release);
    let r = f();
    LINK.store(std::ptr::null_mut(), Release);
    r
}

/// Gives `f` the link lent by the current event, if the caller is inside one.
pub fn with_link<R>(f: impl FnOnce(&mut Link) -> R) -> Option<R> {
    let p = LINK.load(Acquire);
    if p.is_null() || !crate::threads::suspend::is_agent_thread(hiber_sys::gettid()) {
        return None;
    }
    // `lend` keeps the link alive and exclusively ours (this is the
    // checkpoint thread, inside `lend`) until it clears the pointer.
    // SAFETY: see just above.
    Some(f(unsafe { &mut *p }))
}

pub fn pre_suspend(link: &mut Link) {
    crate::mechanisms::pre_suspend();
    lend(link, || {
        plugins(PRE_SUSPEND);
        callbacks(PRE_CHECKPOINT);
    });
}

/// Threads are stopped: plugins only (their code must be async-signal-safe).
pub fn pre_checkpoint() {
    plugins(PRE_CHECKPOINT);
}

pub fn resume(link: &mut Link) {
    crate::mechanisms::resume();
    lend(link, || {
        plugins(RESUME);
        callbacks(RESUME);
    });
}

pub fn restart(link: &mut Link) {
    lend(link, || {
        plugins(RESTART);
        callbacks(RESTART);
    });
}
