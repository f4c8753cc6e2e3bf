//! The restorer's own mappings, parsed from `/proc/self/maps` into fixed
//! storage (no allocator). The restorer owns few mappings: 64 is plenty.

use hiber_sys::consts::O_RDONLY;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum Kind {
    Other = 0,
    Vdso = 1,
    Vvar = 2,
    VvarVclock = 3,
    Vsyscall = 4,
}

#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub special: Kind,
}

const MAX: usize = 64;
static mut BUF: [u8; 16384] = [0; 16384];
static mut LIST: [Mapping; MAX] = [Mapping {
    start: 0,
    end: 0,
    special: Kind::Other,
}; MAX];
static mut COUNT: usize = 0;

/// Reads and parses `/proc/self/maps`. Single-threaded use only.
pub fn read_self() {
    let fd = match hiber_sys::open(c"/proc/self/maps", O_RDONLY, 0) {
        Ok(fd) => fd as i32,
        Err(e) => crate::die("cannot open /proc/self/maps", e.into_raw() as u64),
    };
    // the restorer is single-threaded and these statics are only
    // touched from here and `current`, never concurrently.
    // SAFETY: see just above.
    let buf = unsafe { &mut *core::ptr::addr_of_mut!(BUF) };
    let mut len = 0;
    loop {
        match hiber_sys::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(hiber_sys::Errno::EINTR) => {}
            Err(e) => crate::die("cannot read /proc/self/maps", e.into_raw() as u64),
        }
        if len == buf.len() {
            crate::die("too many mappings in the restorer", len as u64);
        }
    }
    let _ = hiber_sys::close(fd);
    // SAFETY: as above.
    let list = unsafe { &mut *core::ptr::addr_of_mut!(LIST) };
    let mut n = 0;
    for line in buf[..len].split(|&c| c == b'\n') {
        if line.is_empty() {
            continue;
        }
        if n == MAX {
            crate::die("too many mappings in the restorer", n as u64);
        }
        list[n] = parse_line(line);
        n += 1;
    }
    // SAFETY: as above.
    unsafe { COUNT = n };
}

fn parse_line(line: &[u8]) -> Mapping {
    let dash = line.iter().position(|&c| c == b'-').unwrap_or(0);
    let space = line.iter().position(|&c| c == b' ').unwrap_or(0);
    let start = hiber_sys::fmt::parse_hex(&line[..dash]);
    let end = hiber_sys::fmt::parse_hex(line.get(dash + 1..space).unwrap_or(&[]));
    let (Some(start), Some(end)) = (start, end) else {
        crate::die("cannot parse /proc/self/maps", 0)
    };
    let special = if line.ends_with(b"[vdso]") {
        Kind::Vdso
    } else if line.ends_with(b"[vvar]") {
        Kind::Vvar
    } else if line.ends_with(b"[vvar_vclock]") {
        Kind::VvarVclock
    } else if line.ends_with(b"[vsyscall]") {
        Kind::Vsyscall
    } else {
        Kind::Other
    };
    Mapping {
        start,
        end,
        special,
    }
}

pub fn current() -> &'static [Mapping] {
    // written once by `read_self` before any reader runs; the
    // restorer is single-threaded.
    // SAFETY: see just above.
    unsafe { (&*core::ptr::addr_of!(LIST)).get(..COUNT).unwrap_or(&[]) }
}

/// `[lowest start, highest end)` of the vDSO and vvar mappings.
pub fn special_span() -> (u64, u64) {
    let mut lo = u64::MAX;
    let mut hi = 0;
    for m in current() {
        if matches!(m.special, Kind::Vdso | Kind::Vvar | Kind::VvarVclock) {
            lo = lo.min(m.start);
            hi = hi.max(m.end);
        }
    }
    if lo == u64::MAX { (0, 0) } else { (lo, hi) }
}
