//! Resource limits. Raising a hard limit needs privileges, so a restart on
//! a host with lower hard limits keeps the lower ones and says so.

use hiber_image::meta::Rlimit;

const RESOURCES: u32 = 16;

pub fn save() -> Vec<Rlimit> {
    (0..RESOURCES)
        .filter_map(|r| {
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: prlimit on ourselves with a valid out pointer.
            let rc = unsafe { libc::prlimit(0, r as _, std::ptr::null(), &mut l) };
            (rc == 0).then_some(Rlimit {
                resource: r,
                cur: l.rlim_cur,
                max: l.rlim_max,
            })
        })
        .collect()
}

pub fn restore(limits: &[Rlimit]) -> Vec<String> {
    let mut warnings = Vec::new();
    for l in limits {
        let want = libc::rlimit {
            rlim_cur: l.cur,
            rlim_max: l.max,
        };
        // SAFETY: prlimit on ourselves with valid pointers.
        let rc = unsafe { libc::prlimit(0, l.resource as _, &want, std::ptr::null_mut()) };
        if rc != 0 {
            // Keep at least the soft limit if the hard one cannot be raised.
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: as above.
            unsafe { libc::prlimit(0, l.resource as _, std::ptr::null(), &mut cur) };
            let soft = libc::rlimit {
                rlim_cur: l.cur.min(cur.rlim_max),
                rlim_max: cur.rlim_max,
            };
            // SAFETY: as above.
            unsafe { libc::prlimit(0, l.resource as _, &soft, std::ptr::null_mut()) };
            warnings.push(format!(
                "resource limit {} kept at {} (saved {})",
                l.resource, cur.rlim_max, l.max
            ));
        }
    }
    warnings
}

/// Resource limits as a mechanism.
pub struct Limits;

impl crate::mechanisms::Mechanism for Limits {
    fn name(&self) -> &'static str {
        "resource limits"
    }

    fn capture(&self, ctx: &mut crate::mechanisms::Capture<'_>) -> Result<(), String> {
        ctx.saved.process.rlimits = save();
        Ok(())
    }

    fn restore(&self, ctx: &mut crate::mechanisms::Restore<'_>) {
        ctx.warnings.extend(restore(&ctx.saved.process.rlimits));
    }
}
