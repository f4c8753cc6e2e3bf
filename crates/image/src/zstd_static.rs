//! A zstd compression context living in memory allocated up front.
//!
//! The writer compresses while every other thread of the process is
//! stopped, possibly inside `malloc` holding an arena lock. A normal
//! `ZSTD_CCtx` allocates its tables on first use (and on parameter
//! changes), which could deadlock there. `ZSTD_initStaticCCtx` instead
//! places the context in a caller-provided workspace, and zstd guarantees it
//! "will never resize nor malloc() when using a static buffer". The
//! workspace is sized with `ZSTD_estimateCCtxSize(level)`, which covers
//! one-shot compression of input of any size at that level.
//!
//! [`StaticCctx::compress`] is therefore async-signal-safe in the sense that
//! matters here: it allocates nothing, takes no lock and makes no syscall.
//! All the unsafe FFI of the crate is in this module.

use core::ffi::{CStr, c_void};
use core::ptr::NonNull;
use std::vec;
use std::vec::Vec;

/// Worst-case compressed size of `len` input bytes.
pub(crate) fn compress_bound(len: usize) -> usize {
    // SAFETY: a pure arithmetic function of its argument; no pointers.
    unsafe { zstd_sys::ZSTD_compressBound(len) }
}

fn error_name(code: usize) -> &'static str {
    // ZSTD_getErrorName returns a pointer to a static NUL-terminated
    // string for any input, including non-error codes.
    // SAFETY: see just above.
    let name = unsafe { CStr::from_ptr(zstd_sys::ZSTD_getErrorName(code)) };
    name.to_str().unwrap_or("unknown zstd error")
}

fn is_error(code: usize) -> bool {
    // SAFETY: a pure function of its argument; no pointers.
    unsafe { zstd_sys::ZSTD_isError(code) != 0 }
}

/// A compression context whose memory was all allocated by [`new`].
///
/// [`new`]: StaticCctx::new
pub(crate) struct StaticCctx {
    /// Backing memory of the context. `u64` elements give the 8-byte
    /// alignment `ZSTD_initStaticCCtx` requires. Never touched directly
    /// after `new`, and its heap buffer doesn't move when `self` moves.
    _workspace: Vec<u64>,
    cctx: NonNull<zstd_sys::ZSTD_CCtx>,
    level: i32,
}

// SAFETY: the context is plain memory owned by `_workspace` (no thread-local
// state, no pointers to other threads' data); it is only used through
// `&mut self`, so moving it to another thread is sound.
unsafe impl Send for StaticCctx {}

impl StaticCctx {
    /// Allocates and initialises a context for `level`. This is the only
    /// place that allocates; call it before threads are stopped.
    pub(crate) fn new(level: i32) -> Result<StaticCctx, &'static str> {
        // SAFETY: pure functions returning the supported level range.
        let (min, max) = unsafe { (zstd_sys::ZSTD_minCLevel(), zstd_sys::ZSTD_maxCLevel()) };
        if level < min || level > max || level == 0 {
            return Err("compression level out of zstd's range");
        }
        // SAFETY: pure function of its argument.
        let size = unsafe { zstd_sys::ZSTD_estimateCCtxSize(level) };
        if is_error(size) {
            return Err(error_name(size));
        }
        let mut workspace = vec![0u64; size.div_ceil(8)];
        let bytes = workspace.len() * 8;
        // `workspace` is 8-byte aligned, `bytes` long and owned by
        // the returned value, which keeps it alive (and unmoved: moving a
        // Vec doesn't move its buffer) as long as the context is used.
        // SAFETY: see just above.
        let raw = unsafe { zstd_sys::ZSTD_initStaticCCtx(workspace.as_mut_ptr().cast(), bytes) };
        let cctx = NonNull::new(raw).ok_or("ZSTD_initStaticCCtx refused the workspace")?;
        Ok(StaticCctx {
            _workspace: workspace,
            cctx,
            level,
        })
    }

    /// Compresses `src` into `dst` as one frame (content size recorded);
    /// returns the compressed length. Allocation-free. Fails when `dst` is
    /// too small, which callers use as "doesn't shrink" by passing a `dst`
    /// no larger than `src`.
    pub(crate) fn compress(&mut self, dst: &mut [u8], src: &[u8]) -> Result<usize, &'static str> {
        // `cctx` was initialised in `new` on a workspace we still own
        // and is used exclusively (`&mut self`); `dst` and `src` are valid
        // for their lengths and don't overlap (one is `&mut`).
        // SAFETY: see just above.
        let n = unsafe {
            zstd_sys::ZSTD_compressCCtx(
                self.cctx.as_ptr(),
                dst.as_mut_ptr().cast::<c_void>(),
                dst.len(),
                src.as_ptr().cast::<c_void>(),
                src.len(),
                self.level,
            )
        };
        if is_error(n) {
            Err(error_name(n))
        } else {
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_and_refuses_small_output() {
        let mut c = StaticCctx::new(1).expect("ctx");
        let src = vec![7u8; 1 << 20];
        let mut dst = vec![0u8; compress_bound(src.len())];
        let n = c.compress(&mut dst, &src).expect("compress");
        assert!(n < 1000);
        let back = zstd_safe::decompress(&mut vec![0u8; src.len()][..], &dst[..n]).expect("d");
        assert_eq!(back, src.len());
        let mut tiny = [0u8; 4];
        assert!(c.compress(&mut tiny, &src).is_err());
        assert!(StaticCctx::new(1000).is_err());
    }
}

#[cfg(test)]
mod guard_tests {
    use std::vec;
    use std::vec::Vec;
    /// zstd must stay inside the workspace `ZSTD_estimateCCtxSize` sized.
    #[test]
    fn static_context_stays_inside_its_workspace() {
        for level in [1, 3] {
            // SAFETY: pure function.
            let size = unsafe { zstd_sys::ZSTD_estimateCCtxSize(level) };
            let words = size.div_ceil(8);
            let guard = 1 << 16;
            let mut ws = vec![0x5a5a_5a5a_5a5a_5a5au64; words + guard];
            // SAFETY: the first `words * 8` bytes are the workspace.
            let cctx = unsafe { zstd_sys::ZSTD_initStaticCCtx(ws.as_mut_ptr().cast(), words * 8) };
            assert!(!cctx.is_null());
            let mut seed = 12345u64;
            for round in 0..40usize {
                let len = [4096usize, 65536, 1 << 20, 4 << 20, 300_000][round % 5];
                let src: Vec<u8> = (0..len)
                    .map(|i| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        if (i / 4096 + round) % 3 == 0 {
                            (seed >> 56) as u8
                        } else {
                            (i % 251) as u8
                        }
                    })
                    .collect();
                for dst_len in [len, super::compress_bound(len)] {
                    let mut dst = vec![0u8; dst_len];
                    // SAFETY: valid buffers and context.
                    unsafe {
                        zstd_sys::ZSTD_compressCCtx(
                            cctx,
                            dst.as_mut_ptr().cast(),
                            dst.len(),
                            src.as_ptr().cast(),
                            src.len(),
                            level,
                        )
                    };
                    let bad = ws[words..].iter().position(|&w| w != 0x5a5a_5a5a_5a5a_5a5a);
                    assert_eq!(
                        bad, None,
                        "level {level} round {round} dst {dst_len}: wrote past the workspace"
                    );
                }
            }
        }
    }
}
