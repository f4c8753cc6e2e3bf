//! The agent's private allocator.
//!
//! While the program's threads are stopped, one of them may hold a glibc
//! malloc arena lock; if the checkpoint thread then called malloc it could
//! deadlock. All Rust allocations of the agent go to dlmalloc instead, which
//! takes its memory straight from `mmap` and has its own lock that only
//! agent code ever takes.

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
