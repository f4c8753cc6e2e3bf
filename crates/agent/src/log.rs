//! Messages to the program's stderr, prefixed so users can tell them apart.
//! Only used from normal (not signal) context.

pub fn warn(msg: &str) {
    let line = format!("hiber[{}]: warning: {msg}\n", std::process::id());
    let _ = hiber_sys::write_all(2, line.as_bytes());
}

pub fn debug(msg: &str) {
    if crate::config::get().debug {
        let line = format!("hiber[{}]: {msg}\n", std::process::id());
        let _ = hiber_sys::write_all(2, line.as_bytes());
    }
}
