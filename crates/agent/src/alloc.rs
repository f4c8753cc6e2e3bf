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

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

const ARENA: usize = 16 << 20;

static DL: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
static FROZEN: AtomicBool = AtomicBool::new(false);
static ARENA_BASE: AtomicUsize = AtomicUsize::new(0);
static ARENA_NEXT: AtomicUsize = AtomicUsize::new(0);

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
        unsafe { DL.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_arena(ptr) || FROZEN.load(Acquire) {
            return;
        }
        // SAFETY: `ptr` came from dlmalloc with this layout.
        unsafe { DL.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(ptr) && !FROZEN.load(Acquire) {
            // SAFETY: forwarded contract.
            return unsafe { DL.realloc(ptr, layout, new_size) };
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
