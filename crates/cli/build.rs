//! Exports `HIBER_CLI` from the `hiber` binary, so the agent, preloaded into
//! a `hiber` command run from inside a computation (`hiber checkpoint` in a
//! script, `hiber nocheckpoint`), can tell it is in the CLI and stay out.
fn main() {
    println!("cargo:rustc-link-arg-bin=hiber=-Wl,--export-dynamic-symbol=HIBER_CLI");
}
