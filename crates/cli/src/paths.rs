//! Where hiber's other parts are: next to the `hiber` executable (a build
//! tree), or under `../lib/` and `../lib/hiber/` of an installed prefix.

use std::path::PathBuf;

use anyhow::{Context, bail};

fn candidates(name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let exe = std::env::current_exe().context("cannot locate the hiber executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    Ok(vec![
        dir.join(name),
        dir.join("../lib").join(name),
        dir.join("../lib/hiber").join(name),
    ])
}

fn find(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let c = candidates(name)?;
    for p in &c {
        if p.is_file() {
            return Ok(p.canonicalize().unwrap_or_else(|_| p.clone()));
        }
    }
    bail!(
        "cannot find {name} (looked in {}); build it with `cargo build --release` or set {env}",
        c.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The agent library injected into programs.
pub fn agent_lib() -> anyhow::Result<PathBuf> {
    find("libhiber.so", "HIBER_AGENT")
}

/// The freestanding restorer.
pub fn restorer() -> anyhow::Result<PathBuf> {
    find("hiber-restore", "HIBER_RESTORER")
}
