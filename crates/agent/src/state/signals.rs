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
