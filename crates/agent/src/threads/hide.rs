//! Keeping the agent's own threads out of the program's view of
//! `/proc/self/task`.
//!
//! A program that counts or walks its threads through the task directory
//! (thread pools sizing themselves, debuggers, `ps -L` run on itself) must
//! see only its own. `readdir` skips an entry only when its name is the tid
//! of an agent thread; only then is the directory checked to be this
//! process's task directory, so other directories pay one string test per
//! entry.

use std::ffi::{CStr, c_char};
use std::io::Write;

use crate::next::real;
use crate::threads::suspend::is_agent_thread;

type ReaddirFn = unsafe extern "C" fn(*mut libc::DIR) -> *mut libc::dirent64;

/// The tid an entry name spells, if it is all decimal digits.
fn tid_of(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

/// Whether `fd` is this process's `/proc/<pid>/task` directory.
fn is_own_task_dir(fd: libc::c_int) -> bool {
    let mut link = [0u8; 48];
    let mut c = std::io::Cursor::new(&mut link[..]);
    if write!(c, "/proc/self/fd/{fd}\0").is_err() {
        return false;
    }
    let mut target = [0u8; 64];
    // `link` is NUL-terminated; `target` is a writable buffer of the
    // length passed.
    // SAFETY: see just above.
    let n = unsafe {
        libc::readlink(
            link.as_ptr().cast::<c_char>(),
            target.as_mut_ptr().cast::<c_char>(),
            target.len(),
        )
    };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    let mut want = [0u8; 48];
    let mut c = std::io::Cursor::new(&mut want[..]);
    if write!(c, "/proc/{}/task", hiber_sys::getpid()).is_err() {
        return false;
    }
    let len = c.position() as usize;
    target.get(..n) == want.get(..len)
}

/// # Safety
/// `d` is a directory stream and `e` the entry `readdir` just returned.
unsafe fn hidden(d: *mut libc::DIR, e: *const libc::dirent64) -> bool {
    // SAFETY: `d_name` of a returned entry is NUL-terminated.
    let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) };
    let Some(tid) = tid_of(name.to_bytes()) else {
        return false;
    };
    // SAFETY: `d` is a valid directory stream.
    is_agent_thread(tid) && is_own_task_dir(unsafe { libc::dirfd(d) })
}

/// # Safety
/// Same contract as libc's `readdir64`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir64(d: *mut libc::DIR) -> *mut libc::dirent64 {
    let f = real!("readdir64", ReaddirFn);
    loop {
        // SAFETY: forwarded argument.
        let e = unsafe { f(d) };
        // SAFETY: `e` was just returned for `d`.
        if e.is_null() || !unsafe { hidden(d, e) } {
            return e;
        }
    }
}

/// # Safety
/// Same contract as libc's `readdir` (on x86-64 `struct dirent` and
/// `struct dirent64` are the same).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readdir(d: *mut libc::DIR) -> *mut libc::dirent64 {
    let f = real!("readdir", ReaddirFn);
    loop {
        // SAFETY: forwarded argument.
        let e = unsafe { f(d) };
        // SAFETY: `e` was just returned for `d`.
        if e.is_null() || !unsafe { hidden(d, e) } {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tid_of;

    #[test]
    fn tids_are_decimal_names() {
        assert_eq!(tid_of(b"1234"), Some(1234));
        assert_eq!(tid_of(b"."), None);
        assert_eq!(tid_of(b""), None);
        assert_eq!(tid_of(b"12a"), None);
        assert_eq!(tid_of(b"99999999999"), None);
    }
}
