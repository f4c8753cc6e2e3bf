//! Working directory and umask.

pub fn save_cwd() -> String {
    std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

pub fn save_umask() -> u32 {
    // umask cannot fail; the program's threads are stopped, so the
    // brief change is invisible.
    // SAFETY: see just above.
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

/// Working directory and umask as a mechanism.
pub struct WorkingDir;

impl crate::mechanisms::Mechanism for WorkingDir {
    fn name(&self) -> &'static str {
        "working directory and umask"
    }

    fn capture(&self, ctx: &mut crate::mechanisms::Capture<'_>) -> Result<(), String> {
        ctx.saved.process.cwd = save_cwd();
        ctx.saved.process.umask = save_umask();
        Ok(())
    }

    fn restore(&self, ctx: &mut crate::mechanisms::Restore<'_>) {
        let p = &ctx.saved.process;
        ctx.warnings.extend(restore(&p.cwd, p.umask));
    }
}
