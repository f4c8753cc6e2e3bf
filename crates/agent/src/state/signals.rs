//! Signal dispositions, read and written with raw `rt_sigaction` so glibc's
//! `sa_restorer` is kept exactly. The per-thread masks come back through
//! `rt_sigreturn`; process-pending signals are recorded for `inspect`.

use hiber_image::meta::SigAction;

pub fn save() -> Vec<SigAction> {
    (1u32..=64)
        .filter(|&s| s != 9 && s != 19)
        .filter_map(|s| {
            let k = hiber_sys::rt_sigaction_get(s).ok()?;
            Some(SigAction {
                signo: s,
                handler: k.handler,
                flags: k.flags,
                restorer: k.restorer,
                mask: k.mask,
            })
        })
        .collect()
}

pub fn restore(actions: &[SigAction]) -> Vec<String> {
    let mut warnings = Vec::new();
    for a in actions {
        let k = hiber_sys::KernelSigaction {
            handler: a.handler,
            flags: a.flags,
            restorer: a.restorer,
            mask: a.mask,
        };
        // the handler and restorer addresses are those the process
        // had, and its memory is restored at the same addresses.
        // SAFETY: see just above.
        if let Err(e) = unsafe { hiber_sys::rt_sigaction_set(a.signo, &k) } {
            warnings.push(format!(
                "cannot restore the handler of signal {}: {e}",
                a.signo
            ));
        }
    }
    warnings
}

/// Raises again the signals that were pending at the checkpoint: for the
/// process, then for each recreated thread (at its new tid). They are
/// blocked wherever they were pending, so they wait, as before, until the
/// program unblocks them. Real-time payloads are not preserved.
pub fn repost_pending(process: u64) {
    let pid = hiber_sys::getpid();
    for sig in 1..=64u32 {
        if process & (1 << (sig - 1)) != 0 {
            // SAFETY: kill on ourselves with a signal that was pending.
            unsafe { libc::kill(pid as i32, sig as i32) };
        }
    }
    for s in crate::threads::suspend::slots() {
        let p = s.pending.load(std::sync::atomic::Ordering::Relaxed);
        let tid = s.new_tid.load(std::sync::atomic::Ordering::Relaxed);
        for sig in 1..=64u32 {
            if tid != 0 && p & (1 << (sig - 1)) != 0 {
                let _ = hiber_sys::tgkill(pid, tid, sig);
            }
        }
    }
}

/// Signal dispositions and pending signals as a mechanism (the masks come
/// back with each thread's signal frame).
pub struct Signals;

impl crate::mechanisms::Mechanism for Signals {
    fn name(&self) -> &'static str {
        "signals"
    }

    fn capture(&self, ctx: &mut crate::mechanisms::Capture<'_>) -> Result<(), String> {
        ctx.saved.process.sigactions = save();
        ctx.saved.process.pending_signals = shared_pending();
        Ok(())
    }

    fn restore(&self, ctx: &mut crate::mechanisms::Restore<'_>) {
        ctx.warnings.extend(restore(&ctx.saved.process.sigactions));
        repost_pending(ctx.saved.process.pending_signals);
    }
}

fn status_mask(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn ckpt_signal_bit() -> u64 {
    1u64 << (crate::config::get().ckpt_signal - 1)
}

/// Signals pending for the whole process (bit n-1 = signal n).
pub fn shared_pending() -> u64 {
    status_mask("/proc/self/status", "ShdPnd:") & !ckpt_signal_bit()
}

/// Signals pending for one thread only.
pub fn thread_pending(tid: u32) -> u64 {
    status_mask(&format!("/proc/self/task/{tid}/status"), "SigPnd:") & !ckpt_signal_bit()
}
