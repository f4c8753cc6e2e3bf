//! The exported `execl`, `execlp`, `execle` and `clone`, implemented in
//! `shim.c` (they are C-variadic, which Rust cannot define).
//!
//! rustc links a cdylib with a version script that exports its
//! `#[no_mangle]` items and hides every other symbol, the C library's
//! included (rust-lang/rust#128071, rfcs#2771). So the exported symbols are
//! defined here, each a single jump to its hidden C implementation: a jump,
//! unlike a call, leaves the argument registers, `%al` (the count of
//! vector registers a variadic caller sets) and the stack with the
//! caller's return address and stacked arguments exactly as the caller
//! made them, so the C function is entered as if called directly.
//!
//! The Rust signatures below are never used: nothing in Rust calls these,
//! and the C prototypes are glibc's (`<unistd.h>`, `<sched.h>`).

use std::arch::naked_asm;

unsafe extern "C" {
    fn hiber_shim_execl();
    fn hiber_shim_execlp();
    fn hiber_shim_execle();
    fn hiber_shim_clone();
}

/// Exports `$name`, a single jump to `$target`.
macro_rules! jump {
    ($(#[$doc:meta])* $name:ident => $target:ident) => {
        $(#[$doc])*
        // SAFETY: the body is one jump to shim.c's function of the same C
        // signature, which returns to our caller.
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() {
            naked_asm!("jmp {f}", f = sym $target)
        }
    };
}

jump!(
    /// `int execl(const char *path, const char *arg, ... /*, NULL */)`.
    execl => hiber_shim_execl
);
jump!(
    /// `int execlp(const char *file, const char *arg, ... /*, NULL */)`.
    execlp => hiber_shim_execlp
);
jump!(
    /// `int execle(const char *path, const char *arg, ... /*, NULL, char *const envp[] */)`.
    execle => hiber_shim_execle
);
jump!(
    /// `int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...
    /// /* pid_t *parent_tid, void *tls, pid_t *child_tid */)`.
    clone => hiber_shim_clone
);
