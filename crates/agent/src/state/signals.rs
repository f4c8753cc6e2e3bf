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
        // SAFETY: the handler and restorer addresses are those the process
        // had, and its memory is restored at the same addresses.
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
