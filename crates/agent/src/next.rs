//! Reaching glibc's definition of a function the agent wraps.

/// glibc's own definition of `$name` (the next one after this library),
/// resolved once with `dlsym(RTLD_NEXT)` and cached; `$ty` is its C
/// signature.
macro_rules! real {
    ($name:literal, $ty:ty) => {{
        static PTR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut p = PTR.load(std::sync::atomic::Ordering::Relaxed);
        if p == 0 {
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
            p = unsafe { libc::dlsym(libc::RTLD_NEXT, concat!($name, "\0").as_ptr().cast()) }
                as usize;
            PTR.store(p, std::sync::atomic::Ordering::Relaxed);
        }
        // `p` is glibc's definition of this very function, whose
        // C signature is `$ty`.
        // SAFETY: see just above.
        unsafe { std::mem::transmute::<usize, $ty>(p) }
    }};
}
pub(crate) use real;
