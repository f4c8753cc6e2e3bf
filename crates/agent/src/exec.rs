//! Carrying the agent across `exec`.
//!
//! A process of the computation that execs stays in it: the new program
//! loads the agent again through `LD_PRELOAD` and joins the coordinator
//! before `main`. Programs that build a fresh environment for their
//! children (`env -i`, `execle` with a short list, daemons clearing
//! `environ`) would drop it; so the exec wrappers add back `LD_PRELOAD`
//! (with the agent first if the program set its own) and every `HIBER_*`
//! variable the process started with, and give `HIBER_COORD` the
//! coordinator's current address (after a restart it may have moved).

use std::ffi::{CStr, CString, c_char};

/// A replacement environment, kept alive until the exec.
pub struct Env {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl Env {
    pub fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// The environment `envp` with the agent's variables added back, or
/// `None` when nothing needs to change (or the agent is not active here).
///
/// # Safety
/// `envp` is null or a null-terminated array of NUL-terminated strings.
pub unsafe fn with_agent(envp: *const *const c_char) -> Option<Env> {
    let cfg = crate::config::get();
    if !cfg.enabled || !crate::capi::STARTED.load(std::sync::atomic::Ordering::Acquire) {
        return None;
    }
    let mut vars: Vec<Vec<u8>> = Vec::new();
    if !envp.is_null() {
        let mut p = envp;
        // SAFETY: a null-terminated array of C strings (caller's contract).
        unsafe {
            while !(*p).is_null() {
                vars.push(CStr::from_ptr(*p).to_bytes().to_vec());
                p = p.add(1);
            }
        }
    }
    let coord = crate::checkpoint::shared().coord;
    let changed = merge(&mut vars, &cfg.carried, &coord);
    if !changed {
        return None;
    }
    let strings: Vec<CString> = vars
        .into_iter()
        .filter_map(|v| CString::new(v).ok())
        .collect();
    let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    Some(Env {
        _strings: strings,
        ptrs,
    })
}

/// Adds the `carried` variables missing from `vars`, makes sure
/// `LD_PRELOAD` names the agent, and sets `HIBER_COORD` to `coord` (when
/// known). Returns whether anything changed.
fn merge(vars: &mut Vec<Vec<u8>>, carried: &[(String, String)], coord: &str) -> bool {
    let mut changed = false;
    let find = |vars: &[Vec<u8>], k: &str| {
        vars.iter()
            .position(|v| v.len() > k.len() && v.starts_with(k.as_bytes()) && v[k.len()] == b'=')
    };
    for (k, v) in carried {
        let value = if k == "HIBER_COORD" && !coord.is_empty() {
            coord
        } else {
            v.as_str()
        };
        let entry = format!("{k}={value}").into_bytes();
        match find(vars, k) {
            None => {
                vars.push(entry);
                changed = true;
            }
            Some(i) if k == "HIBER_COORD" && vars[i] != entry => {
                vars[i] = entry;
                changed = true;
            }
            Some(i) if k == "LD_PRELOAD" => {
                // The agent's path is the first element of the launched
                // LD_PRELOAD; the program's own list may lack it.
                let agent = v.split([':', ' ']).find(|p| p.ends_with("libhiber.so"));
                let current = String::from_utf8_lossy(&vars[i][k.len() + 1..]).into_owned();
                if let Some(agent) = agent
                    && !current.split([':', ' ']).any(|p| p == agent)
                {
                    vars[i] = format!("{k}={agent}:{current}").into_bytes();
                    changed = true;
                }
            }
            Some(_) => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::merge;

    fn carried() -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), "/opt/hiber/libhiber.so".into()),
            ("HIBER_LAUNCHED".into(), "1".into()),
            ("HIBER_COORD".into(), "127.0.0.1:7779".into()),
        ]
    }

    #[test]
    fn a_cleared_environment_gets_the_agent_back() {
        let mut v = Vec::new();
        assert!(merge(&mut v, &carried(), "127.0.0.1:9000"));
        assert_eq!(
            v,
            vec![
                b"LD_PRELOAD=/opt/hiber/libhiber.so".to_vec(),
                b"HIBER_LAUNCHED=1".to_vec(),
                b"HIBER_COORD=127.0.0.1:9000".to_vec(),
            ]
        );
    }

    #[test]
    fn a_complete_environment_is_left_alone() {
        let mut v = vec![
            b"PATH=/bin".to_vec(),
            b"LD_PRELOAD=/opt/hiber/libhiber.so:/x/libfoo.so".to_vec(),
            b"HIBER_LAUNCHED=1".to_vec(),
            b"HIBER_COORD=127.0.0.1:9000".to_vec(),
        ];
        assert!(!merge(&mut v, &carried(), "127.0.0.1:9000"));
    }

    #[test]
    fn the_programs_own_preload_keeps_the_agent_first() {
        let mut v = vec![b"LD_PRELOAD=/x/libfoo.so".to_vec()];
        assert!(merge(&mut v, &carried(), ""));
        assert_eq!(
            v[0],
            b"LD_PRELOAD=/opt/hiber/libhiber.so:/x/libfoo.so".to_vec()
        );
        assert!(v.contains(&b"HIBER_COORD=127.0.0.1:7779".to_vec()));
    }
}
