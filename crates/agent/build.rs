//! `libhiber.so` gets a SONAME, so that a program linked with `-lhiber`
//! and run under `hiber launch` (which preloads the library, possibly from
//! another path) loads one agent, not two.
//!
//! `src/shim.c` holds the wrappers of variadic libc functions (`execl`,
//! `execlp`, `execle`, `clone`), which Rust cannot define; it is compiled
//! into the library here.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libhiber.so");
    // Every exec'd program of a computation loads the agent: one mapping
    // for code and read-only data instead of three (fewer mmaps per exec).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,noseparate-code");
    if let Some(dir) = gcc_lib_dir() {
        println!("cargo:rustc-link-search=native={dir}");
        println!("cargo:rustc-link-lib=static=gcc_eh");
    }
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

fn gcc_lib_dir() -> Option<String> {
    let out = std::process::Command::new("cc")
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?;
    let path = std::path::Path::new(path.trim());
    path.is_absolute()
        .then(|| path.parent().map(|p| p.display().to_string()))
        .flatten()
}
