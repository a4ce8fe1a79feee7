//! Building the names a translation makes thousands of (hosts, cluster names, SPIFFE IDs) in one
//! allocation of the right size: `format!` costs several times more, and a first translation of a
//! large mesh formats tens of thousands of them.

/// `parts` joined.
pub fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// A port number's decimal digits, without allocating.
pub struct Digits {
    buf: [u8; 5],
    start: usize,
}

impl Digits {
    pub fn new(mut n: u16) -> Self {
        let mut buf = [0u8; 5];
        let mut start = buf.len();
        loop {
            start -= 1;
            buf[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Self { buf, start }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or_default()
    }
}

/// A 64-bit value as 16 lowercase hex digits (`{:016x}`).
pub fn hex16(value: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..16)
        .rev()
        .map(|i| char::from(HEX[((value >> (i * 4)) & 0xf) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_hex_match_format() {
        for n in [0u16, 7, 10, 99, 100, 8080, 15006, u16::MAX] {
            assert_eq!(Digits::new(n).as_str(), n.to_string());
        }
        for v in [0u64, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(hex16(v), format!("{v:016x}"));
        }
        assert_eq!(concat(&["a", "", "bc"]), "abc");
    }
}
