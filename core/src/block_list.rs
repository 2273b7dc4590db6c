//! Block lists: exact addresses and CIDR ranges, as loaded from the
//! operator's file (classic `BlockIPList.txt` included). The driver reads the
//! file; the core matches client addresses against it.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to IPv4, so a dual-stack
/// listener cannot be used to dodge IPv4 limits and blocks.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// One line of a block list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block list line {line}: {text:?} is not an IP address or CIDR range")]
pub struct BlockListError {
    /// 1-based line number.
    pub line: usize,
    /// The offending text.
    pub text: String,
}

/// A set of blocked IPs and CIDR ranges, as loaded from a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockList {
    exact: BTreeSet<IpAddr>,
    v4: Vec<(u32, u8)>,
    v6: Vec<(u128, u8)>,
}

impl BlockList {
    /// An empty list.
    pub fn new() -> Self {
        BlockList::default()
    }

    /// Parses one entry a line: an IP (`10.1.2.3`, `::1`) or a CIDR range
    /// (`10.0.0.0/8`). Blank lines and lines starting with `#` or `;` are
    /// skipped, as are trailing comments after whitespace; CRLF is fine
    /// (classic `BlockIPList.txt` files come from Windows).
    pub fn parse(text: &str) -> Result<Self, BlockListError> {
        let mut list = BlockList::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim().trim_start_matches('\u{feff}');
            let entry = line.split_whitespace().next().unwrap_or("");
            if entry.is_empty() || entry.starts_with('#') || entry.starts_with(';') {
                continue;
            }
            list.insert_str(entry).map_err(|()| BlockListError {
                line: i + 1,
                text: entry.to_string(),
            })?;
        }
        Ok(list)
    }

    fn insert_str(&mut self, entry: &str) -> Result<(), ()> {
        match entry.split_once('/') {
            None => {
                let ip: IpAddr = entry.parse().map_err(|_| ())?;
                self.insert(ip);
            }
            Some((addr, prefix)) => {
                let ip: IpAddr = addr.parse().map_err(|_| ())?;
                let prefix: u8 = prefix.parse().map_err(|_| ())?;
                self.insert_range(ip, prefix)?;
            }
        }
        Ok(())
    }

    /// Blocks one address.
    pub fn insert(&mut self, ip: IpAddr) {
        self.exact.insert(canonical_ip(ip));
    }

    /// Blocks a CIDR range; `Err` when the prefix is too long for the family.
    #[allow(clippy::result_unit_err)]
    pub fn insert_range(&mut self, ip: IpAddr, prefix: u8) -> Result<(), ()> {
        match canonical_ip(ip) {
            IpAddr::V4(v4) if prefix <= 32 => {
                self.v4.push((u32::from(v4) & mask32(prefix), prefix));
                Ok(())
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                self.v6.push((u128::from(v6) & mask128(prefix), prefix));
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// True when `ip` is listed or inside a listed range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        if self.exact.contains(&ip) {
            return true;
        }
        match ip {
            IpAddr::V4(v4) => {
                let a = u32::from(v4);
                self.v4.iter().any(|&(net, p)| a & mask32(p) == net)
            }
            IpAddr::V6(v6) => {
                let a = u128::from(v6);
                self.v6.iter().any(|&(net, p)| a & mask128(p) == net)
            }
        }
    }

    /// Every entry as text, addresses first, then IPv4 and IPv6 ranges
    /// (the form `parse` reads back).
    pub fn entries(&self) -> Vec<String> {
        let mut out: Vec<String> = self.exact.iter().map(|ip| ip.to_string()).collect();
        out.extend(
            self.v4
                .iter()
                .map(|&(net, p)| format!("{}/{p}", std::net::Ipv4Addr::from(net))),
        );
        out.extend(
            self.v6
                .iter()
                .map(|&(net, p)| format!("{}/{p}", std::net::Ipv6Addr::from(net))),
        );
        out
    }

    /// Number of entries (addresses plus ranges).
    pub fn len(&self) -> usize {
        self.exact.len() + self.v4.len() + self.v6.len()
    }

    /// True when nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(crate) fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

pub(crate) fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn block_lists_match_exact_addresses_and_ranges() {
        let l = BlockList::parse(
            "\u{feff}# comment\r\n10.0.0.0/8\r\n192.168.1.7 spammer\r\n; other\r\n\r\n2001:db8::/32\n",
        )
        .expect("parses");
        assert_eq!(l.len(), 3);
        assert_eq!(l.entries(), ["192.168.1.7", "10.0.0.0/8", "2001:db8::/32"]);
        assert!(l.contains(ip("10.200.3.4")));
        assert!(l.contains(ip("192.168.1.7")));
        assert!(l.contains(ip("::ffff:192.168.1.7")));
        assert!(!l.contains(ip("192.168.1.8")));
        assert!(l.contains(ip("2001:db8::5")));
        assert!(!l.contains(ip("2001:db9::5")));
        assert!(BlockList::parse("0.0.0.0/0")
            .expect("ok")
            .contains(ip("1.2.3.4")));
    }

    #[test]
    fn bad_block_list_lines_are_reported_with_their_number() {
        let e = BlockList::parse("1.2.3.4\nnot-an-ip\n").expect_err("must fail");
        assert_eq!(e.line, 2);
        assert!(BlockList::parse("10.0.0.0/33").is_err());
    }
}
