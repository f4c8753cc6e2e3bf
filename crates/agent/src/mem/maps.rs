//! `/proc/self/maps`, parsed.

use hiber_image::format::AreaKind;

#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub dev: u64,
    pub inode: u64,
    pub path: String,
}

impl Mapping {
    pub fn prot(&self) -> u32 {
        (self.read as u32) | (self.write as u32) << 1 | (self.exec as u32) << 2
    }

    pub fn kind(&self) -> AreaKind {
        match self.path.as_str() {
            "[heap]" => AreaKind::Heap,
            "[stack]" => AreaKind::Stack,
            "[vdso]" => AreaKind::Vdso,
            "[vvar]" => AreaKind::Vvar,
            "[vvar_vclock]" => AreaKind::VvarVclock,
            "[vsyscall]" => AreaKind::Vsyscall,
            "" => AreaKind::Anon,
            p if p.starts_with('/') => AreaKind::File,
            _ => AreaKind::Other,
        }
    }

    /// Backed by a file whose unread pages come from that file.
    pub fn file_backed(&self) -> bool {
        self.inode != 0
    }
}

/// Parses the whole maps text; malformed lines are reported, not skipped.
pub fn parse(text: &str) -> Result<Vec<Mapping>, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Result<Mapping, String> {
    let bad = || format!("malformed /proc/self/maps line: {line:?}");
    let mut it = line.splitn(6, ' ');
    let range = it.next().ok_or_else(bad)?;
    let perms = it.next().ok_or_else(bad)?.as_bytes();
    let offset = it.next().ok_or_else(bad)?;
    let dev = it.next().ok_or_else(bad)?;
    let inode = it.next().ok_or_else(bad)?;
    let path = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-').ok_or_else(bad)?;
    let (maj, min) = dev.split_once(':').ok_or_else(bad)?;
    let hex = |v: &str| u64::from_str_radix(v, 16).map_err(|_| bad());
    if perms.len() < 4 {
        return Err(bad());
    }
    Ok(Mapping {
        start: hex(s)?,
        end: hex(e)?,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset: hex(offset)?,
        dev: (hex(maj)? << 8) | hex(min)?,
        inode: inode.parse().map_err(|_| bad())?,
        path,
    })
}

pub fn read_self() -> Result<Vec<Mapping>, String> {
    let text = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("reading /proc/self/maps: {e}"))?;
    parse(&text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let m = parse(
            "55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]\n\
             7f0000000000-7f0000001000 r-xp 00001000 fe:01 1234                       /usr/lib/x y.so\n\
             7ffd00000000-7ffd00002000 r--p 00000000 00:00 0                          [vvar]\n",
        )
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].kind(), AreaKind::Heap);
        assert!(m[0].write && !m[0].exec);
        assert_eq!(m[1].path, "/usr/lib/x y.so");
        assert_eq!(m[1].offset, 0x1000);
        assert_eq!(m[1].dev, 0xfe01);
        assert!(m[1].file_backed());
        assert_eq!(m[2].kind(), AreaKind::Vvar);
        assert!(parse("garbage\n").is_err());
    }
}
