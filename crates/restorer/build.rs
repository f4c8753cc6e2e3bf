//! The restorer is a freestanding static-pie: no libc, no start files, and
//! it relocates itself. rustc links executables as PIE by default, so only
//! the static part and the absence of crt/libc need asking for here.
fn main() {
    println!("cargo:rustc-link-arg-bins=-nostartfiles");
    println!("cargo:rustc-link-arg-bins=-nostdlib");
    println!("cargo:rustc-link-arg-bins=-static-pie");
    println!("cargo:rustc-link-arg-bins=-Wl,-z,norelro");
    println!("cargo:rerun-if-changed=build.rs");
}
