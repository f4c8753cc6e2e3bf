//! Working directory and umask.

pub fn save_cwd() -> String {
    std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

pub fn save_umask() -> u32 {
    // SAFETY: umask cannot fail; the program's threads are stopped, so the
    // brief change is invisible.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

pub fn restore(cwd: &str, umask: u32) -> Vec<String> {
    let mut w = Vec::new();
    if !cwd.is_empty()
        && let Err(e) = std::env::set_current_dir(cwd)
    {
        w.push(format!("cannot return to working directory {cwd}: {e}"));
    }
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(umask as libc::mode_t) };
    w
}
