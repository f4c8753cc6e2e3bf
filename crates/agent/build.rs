//! `libhiber.so` gets a SONAME, so that a program linked with `-lhiber`
//! and run under `hiber launch` (which preloads the library, possibly from
//! another path) loads one agent, not two.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhiber.so");
    println!("cargo:rerun-if-changed=build.rs");
}
