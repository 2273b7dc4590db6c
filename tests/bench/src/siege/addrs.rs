//! Source addresses of the siege's players and attackers.
//!
//! Every player and every attacker connects from an address of its own so
//! that the gate's per-IP limits see what they would see on the internet:
//! players spread over many addresses, attackers over thousands. On
//! loopback every 127.0.0.0/8 address is local, so binding to one needs no
//! set-up; the IPv6 prefix is routed to `lo` by `siege.sh` and bound with
//! IPV6_FREEBIND.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Players count up from here (127.10.0.0/16: 65,024 usable addresses).
pub const PLAYER_BASE: Ipv4Addr = Ipv4Addr::new(127, 10, 0, 1);
/// Players never leave 127.10.0.0/16.
const PLAYER_LAST: Ipv4Addr = Ipv4Addr::new(127, 10, 255, 254);
/// Attackers count up from here (127.20.0.0/14: 260,096 usable addresses,
/// enough for the 200,000 of the address spray).
pub const ATTACKER_BASE: Ipv4Addr = Ipv4Addr::new(127, 20, 0, 1);
/// Attackers never leave 127.20.0.0/14.
const ATTACKER_LAST: Ipv4Addr = Ipv4Addr::new(127, 23, 255, 254);
/// Addresses usable per /24: .0 and .255 are skipped because some stacks
/// treat them as network and broadcast addresses even on loopback.
const PER_24: u32 = 254;

/// The `i`-th usable address counting from `base` (which must end in .1),
/// skipping .0 and .255, or `None` past `last`.
fn nth(base: Ipv4Addr, last: Ipv4Addr, i: u32) -> Option<Ipv4Addr> {
    let block = u32::from(base) & !0xff;
    let addr = block
        .checked_add((i / PER_24).checked_mul(256)?)?
        .checked_add(i % PER_24 + 1)?;
    (addr <= u32::from(last)).then(|| Ipv4Addr::from(addr))
}

/// Player `i`'s address, or `None` when the region is exhausted.
pub fn player(i: u32) -> Option<Ipv4Addr> {
    nth(PLAYER_BASE, PLAYER_LAST, i)
}

/// Attacker `i`'s address, or `None` when the region is exhausted.
pub fn attacker(i: u32) -> Option<Ipv4Addr> {
    nth(ATTACKER_BASE, ATTACKER_LAST, i)
}

/// How many attacker addresses there are.
pub fn attacker_capacity() -> u32 {
    let blocks = (u32::from(ATTACKER_LAST) >> 8) - (u32::from(ATTACKER_BASE) >> 8) + 1;
    blocks * PER_24
}

/// Attacker `i`'s address inside the IPv6 `/64` whose first four segments
/// are those of `prefix`. The interface identifier `5e:0:hi:lo` (i + 1) never
/// collides with `::1`, where the gate listens.
pub fn attacker6(prefix: Ipv6Addr, i: u32) -> Ipv6Addr {
    let p = prefix.segments();
    let n = i.wrapping_add(1);
    Ipv6Addr::new(
        p[0],
        p[1],
        p[2],
        p[3],
        0x5e,
        0,
        (n >> 16) as u16,
        (n & 0xffff) as u16,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_octets() {
        assert_eq!(player(0), Some(Ipv4Addr::new(127, 10, 0, 1)));
        assert_eq!(player(253), Some(Ipv4Addr::new(127, 10, 0, 254)));
        assert_eq!(player(254), Some(Ipv4Addr::new(127, 10, 1, 1)));
        assert_eq!(player(256 * 254 - 1), Some(PLAYER_LAST));
        assert_eq!(player(256 * 254), None);
        assert_eq!(attacker(0), Some(ATTACKER_BASE));
        assert_eq!(attacker_capacity(), 1024 * 254);
        assert_eq!(attacker(attacker_capacity() - 1), Some(ATTACKER_LAST));
        assert_eq!(attacker(attacker_capacity()), None);
        assert!(attacker_capacity() >= 200_000);
    }

    #[test]
    fn every_attacker_address_is_distinct_and_never_the_gate() {
        let prefix: Ipv6Addr = "fd00:5e1::".parse().expect("valid");
        let a = attacker6(prefix, 0);
        assert_eq!(a.to_string(), "fd00:5e1::5e:0:0:1");
        assert_eq!(
            attacker6(prefix, 0x1_0000).to_string(),
            "fd00:5e1::5e:0:1:1"
        );
        let mut seen = std::collections::HashSet::new();
        for i in 0..70_000 {
            let a = attacker6(prefix, i);
            assert_ne!(a, "fd00:5e1::1".parse::<Ipv6Addr>().expect("valid"));
            assert!(seen.insert(a));
        }
        let mut v4 = std::collections::HashSet::new();
        for i in (0..attacker_capacity()).step_by(97) {
            assert!(v4.insert(attacker(i).expect("in range")));
        }
    }
}
