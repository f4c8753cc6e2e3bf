//! The agent's private allocator.
//!
//! While the program's threads are stopped, one of them may hold a glibc
//! malloc arena lock; if the checkpoint thread then called malloc it could
//! deadlock. All Rust allocations of the agent go to dlmalloc instead, which
//! takes its memory straight from `mmap` and has its own lock that only
//! agent code ever takes.
//!
//! While the memory areas are being written, dlmalloc is frozen: its
//! metadata lives in the very pages being saved, so an allocation or a free
//! then could leave the image with allocator pages from different moments.
//! Allocations in that window come from a bump arena (reset by the next
//! freeze; nothing allocated there outlives the checkpoint), and frees are
//! dropped.
//!
//! A copy of the process must not catch another thread inside dlmalloc:
//! the child would find dlmalloc's lock taken for ever. `fork` runs
//! dlmalloc's `pthread_atfork` handler, which takes that lock around the
//! copy; `clone` used as fork (`shim.c`) runs no atfork handlers, so it
//! [holds](hiber_internal_alloc_hold) the allocator instead: every call
//! into dlmalloc is counted, and the hold waits until none is left.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::*};

const ARENA: usize = 16 << 20;

static DL: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
static FROZEN: AtomicBool = AtomicBool::new(false);
static ARENA_BASE: AtomicUsize = AtomicUsize::new(0);
static ARENA_NEXT: AtomicUsize = AtomicUsize::new(0);
/// Calls into dlmalloc in progress, plus [`HELD`] while a copy of the
/// process holds the allocator.
static USERS: AtomicU32 = AtomicU32::new(0);
const HELD: u32 = 1 << 31;

pub struct AgentAlloc;

#[global_allocator]
static ALLOCATOR: AgentAlloc = AgentAlloc;

fn in_arena(p: *mut u8) -> bool {
    let base = ARENA_BASE.load(Relaxed);
    base != 0 && (p as usize) >= base && (p as usize) < base + ARENA
}

fn bump(layout: Layout) -> *mut u8 {
    let base = ARENA_BASE.load(Relaxed);
    if base == 0 {
        return std::ptr::null_mut();
    }
    loop {
        let cur = ARENA_NEXT.load(Relaxed);
        let start = (base + cur).next_multiple_of(layout.align().max(16)) - base;
        let end = start + layout.size();
        if end > ARENA {
            return std::ptr::null_mut();
        }
        if ARENA_NEXT
            .compare_exchange(cur, end, AcqRel, Relaxed)
            .is_ok()
        {
            return (base + start) as *mut u8;
        }
    }
}

/// Freezes dlmalloc for its lifetime.
pub struct Frozen(());

impl Frozen {
    pub fn new() -> Frozen {
        if ARENA_BASE.load(Relaxed) == 0 {
            // SAFETY: a fresh private anonymous mapping owned by the allocator.
            let p = unsafe {
                hiber_sys::mmap(
                    0,
                    ARENA as u64,
                    hiber_sys::consts::PROT_READ | hiber_sys::consts::PROT_WRITE,
                    hiber_sys::consts::MAP_PRIVATE
                        | hiber_sys::consts::MAP_ANONYMOUS
                        | hiber_sys::consts::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if let Ok(p) = p {
                ARENA_BASE.store(p, Relaxed);
            }
        }
        ARENA_NEXT.store(0, Relaxed);
        FROZEN.store(true, Release);
        Frozen(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        FROZEN.store(false, Release);
    }
}

/// In a restarted process: the image was saved frozen, and the arena
/// (mapped after the memory map was read) is not part of it.
pub fn restarted() {
    ARENA_BASE.store(0, Relaxed);
    ARENA_NEXT.store(0, Relaxed);
    FROZEN.store(false, Release);
}

/// Runs `f` (a call into dlmalloc) counted in [`USERS`], after any hold.
fn counted<R>(f: impl FnOnce() -> R) -> R {
    loop {
        let u = USERS.load(Acquire);
        if u & HELD != 0 {
            hiber_sys::futex_wait(&USERS, u);
        } else if USERS
            .compare_exchange_weak(u, u + 1, AcqRel, Relaxed)
            .is_ok()
        {
            break;
        }
    }
    let r = f();
    if USERS.fetch_sub(1, AcqRel) == HELD | 1 {
        // The last one out: the holder waits for this.
        hiber_sys::futex_wake(&USERS);
    }
    r
}

// ---- for shim.c ------------------------------------------------------------

/// Waits until no thread is inside dlmalloc and keeps every thread out
/// (they wait) until [`hiber_internal_alloc_release`]. For the copy of
/// the process in `clone` used as fork, and around `fork` (an atfork
/// handler), so that neither copies dlmalloc's lock taken. The holding
/// thread must not allocate until it releases.
#[unsafe(no_mangle)]
pub extern "C" fn hiber_internal_alloc_hold() {
    // One holder at a time.
    loop {
        let u = USERS.load(Acquire);
        if u & HELD != 0 {
            hiber_sys::futex_wait(&USERS, u);
        } else if USERS
            .compare_exchange_weak(u, u | HELD, AcqRel, Relaxed)
            .is_ok()
        {
            break;
        }
    }
    loop {
        let u = USERS.load(Acquire);
        if u == HELD {
            return;
        }
        hiber_sys::futex_wait(&USERS, u);
    }
}

/// Ends [`hiber_internal_alloc_hold`], in the holder and in the copy (which
/// has the hold too).
#[unsafe(no_mangle)]
pub extern "C" fn hiber_internal_alloc_release() {
    USERS.fetch_and(!HELD, AcqRel);
    hiber_sys::futex_wake(&USERS);
}

// SAFETY: every path returns memory valid for `layout` (dlmalloc's, or a
// disjoint, aligned piece of the arena) or null, and memory is only ever
// given back to the allocator it came from (arena pieces never are).
unsafe impl GlobalAlloc for AgentAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if FROZEN.load(Acquire) {
            let p = bump(layout);
            if !p.is_null() {
                return p;
            }
        }
        // SAFETY: forwarded contract.
        counted(|| unsafe { DL.alloc(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_arena(ptr) || FROZEN.load(Acquire) {
            return;
        }
        // SAFETY: `ptr` came from dlmalloc with this layout.
        counted(|| unsafe { DL.dealloc(ptr, layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(ptr) && !FROZEN.load(Acquire) {
            // SAFETY: forwarded contract.
            return counted(|| unsafe { DL.realloc(ptr, layout, new_size) });
        }
        // SAFETY: the GlobalAlloc contract makes this a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: allocation through ourselves.
        let p = unsafe { self.alloc(new_layout) };
        if !p.is_null() {
            // SAFETY: both blocks are valid for the smaller size and disjoint.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        p
    }
}
