//! `libhiber.so` gets a SONAME, so that a program linked with `-lhiber`
//! and run under `hiber launch` (which preloads the library, possibly from
//! another path) loads one agent, not two.
//!
//! `src/shim.c` holds the wrappers of variadic libc functions (`execl`,
//! `execlp`, `execle`, `clone`), which Rust cannot define; it is compiled
//! into the library here.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhiber.so");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/shim.c");
    cc::Build::new()
        .file("src/shim.c")
        .flag("-std=gnu11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("hiber_shim");
}
