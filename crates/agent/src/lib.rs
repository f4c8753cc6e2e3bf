//! `libhiber.so`, the agent. `hiber launch` injects it with `LD_PRELOAD`
//! into the program; it starts a checkpoint thread that talks to the
//! coordinator, stops the program's threads with a signal when asked,
//! writes the image, and, in a restarted process, rebuilds the threads and
//! kernel state before the program runs again.
//!
//! Map of the crate (a checkpoint in order):
//! - `checkpoint` — the checkpoint thread and the barrier sequence;
//! - `gate` — the wrapper lock: no checkpoint inside pthread_create, fork,
//!   exec or dlopen;
//! - `threads::suspend` — the signal handler that parks each thread;
//! - `mechanisms` — the agent's own state kinds, as plugins with the same
//!   events C plugins get;
//! - `state` — process-wide kernel state (signals, rlimits, cwd, mm layout);
//! - `fd` — file descriptors;
//! - `mem` — the memory map and the pages worth saving;
//! - `threads::restore` — the restart entry and raw thread re-creation;
//! - `restart` — the checkpoint thread's side of a restart;
//! - `capi` — the C interface (`include/hiber.h`);
//! - `events` — callbacks and plugins around a checkpoint;
//! - `wrappers` — libc functions wrapped so a checkpoint is invisible;
//! - `exec` — the agent's environment carried across `exec`;
//! - `shim` (with `shim.c`) — the variadic `execl*` and `clone`;
//! - `signals` — the checkpoint signal hidden from the program.
//!
//! The agent has its own allocator (`alloc`): its code may allocate while
//! the program's threads are stopped, because a stopped thread can hold
//! glibc's malloc locks but never ours.

mod alloc;
mod capi;
mod checkpoint;
mod config;
mod events;
mod exec;
mod fd;
mod fork;
mod gate;
mod log;
mod mechanisms;
mod mem;
mod next;
mod procfs;
mod restart;
mod shim;
mod signals;
mod state;
mod threads;
mod wrappers;

use std::ffi::{c_char, c_int};

/// Runs once in every process the library is loaded into, after libc is
/// initialised (libc is our dependency, so its constructors ran first).
extern "C" fn hiber_init(_argc: c_int, _argv: *const *const c_char, _envp: *const *const c_char) {
    config::init();
    gate::own();
    if !config::get().enabled {
        // An image that does not take part (`hiber nocheckpoint`, the
        // `hiber` command itself) ends the process's membership that the
        // image before handed over: the coordinator sees it leave.
        if let Some(a) = &config::get().adopt {
            checkpoint::drop_handed_over(a.fd);
        }
        return;
    }
    install_panic_hook();
    // Called once, before the agent's threads exist; it registers
    // pthread_atfork handlers that hold dlmalloc's lock across `fork`, so a
    // fork child never inherits it locked by the checkpoint thread.
    // SAFETY: see just above.
    unsafe { dlmalloc::enable_alloc_after_fork() };
    events::load_plugins();
    match checkpoint::start() {
        Ok(()) => capi::STARTED.store(true, std::sync::atomic::Ordering::Release),
        Err(e) => log::warn(&format!("checkpointing disabled: {e}")),
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT_ARRAY: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = hiber_init;

/// A panic in the agent ends the process with a fixed message and no
/// allocation: the default hook formats (allocates), and a panic raised
/// inside the allocator would then wait for its own lock for ever, with the
/// program's threads stopped. Only for panics on the agent's threads; the
/// program's own code (if it is Rust) keeps its hook.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if threads::suspend::is_agent_thread(hiber_sys::gettid()) {
            let _ = hiber_sys::write_all(
                2,
                b"hiber: internal error in the checkpoint thread; aborting\n",
            );
            std::process::abort();
        }
        previous(info);
    }));
}
