//! The agent's own mechanisms, built as plugins.
//!
//! Each kind of kernel state that memory does not hold is one
//! [`Mechanism`]: it captures itself into the image's metadata at
//! PRE_CHECKPOINT (the program's threads stopped) and restores itself at
//! RESTART (before they run again), and may act at PRE_SUSPEND and RESUME.
//! These are the events C plugins receive (`events.rs`); adding a kind of
//! state is one new module listed in [`BUILTIN`], not edits all over the
//! checkpoint and restart paths.

use hiber_image::meta::{FdMeta, ProcessMeta};

/// What the mechanisms save; kept in memory too, so that a restarted
/// process finds it without reading its image.
#[derive(Clone, Debug, Default)]
pub struct Saved {
    pub process: ProcessMeta,
    pub fds: Vec<FdMeta>,
}

pub struct Capture<'a> {
    pub saved: &'a mut Saved,
    /// The agent's own descriptors (never saved).
    pub exclude_fds: &'a [i32],
}

pub struct Restore<'a> {
    pub saved: &'a Saved,
    /// Descriptors `hiber restart` and the restorer used.
    pub temp_fds: &'a [i32],
    /// Pipes `hiber restart` recreated for the computation.
    pub pipes: &'a [hiber_protocol::handoff::InheritedPipe],
    /// Shared files `hiber restart` opened for the computation.
    pub files: &'a [hiber_protocol::handoff::InheritedFile],
    /// UNIX socket pairs `hiber restart` recreated for the computation.
    pub sockets: &'a [hiber_protocol::handoff::InheritedSocket],
    /// Pty pairs `hiber restart` recreated for the computation.
    pub ptys: &'a [hiber_protocol::handoff::InheritedPty],
    pub warnings: &'a mut Vec<String>,
}

pub trait Mechanism: Sync {
    fn name(&self) -> &'static str;
    /// PRE_SUSPEND: the program's threads still run.
    fn pre_suspend(&self) {}
    /// PRE_CHECKPOINT: threads stopped; no glibc malloc, no stdio.
    fn capture(&self, _ctx: &mut Capture<'_>) -> Result<(), String> {
        Ok(())
    }
    /// RESUME: the image is on disk, the program carries on.
    fn resume(&self) {}
    /// RESTART: recreate the state before the program's threads run.
    fn restore(&self, _ctx: &mut Restore<'_>) {}
}

/// In capture and restore order: descriptors first (a restored cwd or
/// signal state never needs them, but the API's hang-up needs the numbers
/// the descriptors left free), then process-wide state, signals last so
/// that re-posted pending signals meet their restored handlers (then
/// timers, so that no timer fires before its handler is back).
pub static BUILTIN: &[&dyn Mechanism] = &[
    &crate::fd::Descriptors,
    &crate::capi::ApiConnections,
    &crate::state::fs::WorkingDir,
    &crate::state::limits::Limits,
    &crate::state::mm::Layout,
    &crate::state::sysvipc::SysvIpc,
    &crate::state::signals::Signals,
    &crate::state::timers::Timers,
    // Last: once the handlers are back, a program on a terminal learns
    // that its window may have changed.
    &crate::fd::pty::Winch,
];

pub fn capture(ctx: &mut Capture<'_>) -> Result<(), String> {
    for m in BUILTIN {
        m.capture(ctx).map_err(|e| format!("{}: {e}", m.name()))?;
    }
    Ok(())
}

pub fn restore(ctx: &mut Restore<'_>) {
    for m in BUILTIN {
        m.restore(ctx);
    }
}

pub fn pre_suspend() {
    for m in BUILTIN {
        m.pre_suspend();
    }
}

pub fn resume() {
    for m in BUILTIN {
        m.resume();
    }
}
