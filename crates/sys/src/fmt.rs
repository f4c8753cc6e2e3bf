//! Allocation-free message building for code that cannot use `format!`.

/// A fixed buffer that collects a message; overflow is truncated.
pub struct Msg<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Msg<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Msg<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    pub fn hex(&mut self, v: u64) -> &mut Self {
        let mut tmp = [0u8; 18];
        tmp[0] = b'0';
        tmp[1] = b'x';
        for i in 0..16 {
            let d = ((v >> ((15 - i) * 4)) & 0xf) as u8;
            tmp[2 + i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        self.bytes(&tmp)
    }

    pub fn dec(&mut self, v: i64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let neg = v < 0;
        let mut u = v.unsigned_abs();
        loop {
            i -= 1;
            tmp[i] = b'0' + (u % 10) as u8;
            u /= 10;
            if u == 0 {
                break;
            }
        }
        if neg {
            self.bytes(b"-");
        }
        self.bytes(&tmp[i..])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Parses a decimal unsigned number.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Parses a lowercase/uppercase hexadecimal number without prefix.
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut m = Msg::<64>::new();
        m.str("a=").hex(0x1f).str(" b=").dec(-42);
        assert_eq!(m.as_bytes(), b"a=0x000000000000001f b=-42");
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_u64(b"1234"), Some(1234));
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_hex(b"7fff0000"), Some(0x7fff_0000));
        assert_eq!(parse_hex(b""), None);
    }
}
