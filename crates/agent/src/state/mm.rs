//! The mm layout (`prctl(PR_SET_MM_MAP)` fields): code/data/brk/stack and
//! the argument and environment ranges. Without it the restorer's brk
//! would be the process's, and heap growth after a restart would move.

use hiber_image::meta::MmLayout;

pub fn save() -> Result<MmLayout, String> {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .map_err(|e| format!("reading /proc/self/stat: {e}"))?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("malformed /proc/self/stat")?;
    // Field 3 (state) is the first after ')'.
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let field = |n: usize| f.get(n - 3).copied().unwrap_or(0);
    // SAFETY: brk(0) only queries the current break.
    let brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    Ok(MmLayout {
        start_code: field(26),
        end_code: field(27),
        start_stack: field(28),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
        brk,
    })
}

/// The mm layout as a mechanism. Only captured here: the restorer applies
/// it (`PR_SET_MM_MAP`) before the agent runs again.
pub struct Layout;

impl crate::mechanisms::Mechanism for Layout {
    fn name(&self) -> &'static str {
        "mm layout"
    }

    fn capture(&self, ctx: &mut crate::mechanisms::Capture<'_>) -> Result<(), String> {
        ctx.saved.process.mm = save()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn reads_own_layout() {
        let m = super::save().unwrap();
        assert!(m.start_code > 0 && m.end_code > m.start_code);
        assert!(m.brk >= m.start_brk);
        assert!(m.arg_end >= m.arg_start);
    }
}
