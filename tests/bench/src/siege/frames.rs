//! What the siege's sockets send and how a player recognises its answer.

use selgate_core::codec::{self, client_frame, ids, HeaderLayout, Message, MsgHeader};
use selgate_core::split::{Piece, Splitter};

/// A CM_QUERYCHR for `account/certification`, as a stock client sends it
/// (check character `1`, classic 12-byte header).
pub fn query(account: &str, certification: u32) -> Vec<u8> {
    let body = format!("{account}/{certification}");
    let msg = Message::new(MsgHeader::new(ids::CM_QUERYCHR, 0), body.into_bytes());
    client_frame(b'1', &msg, HeaderLayout::Classic)
}

/// Length of a junk burst.
pub const JUNK_LEN: usize = 64;

/// SplitMix64: a tiny seeded generator, so that the junk bytes are the same
/// in every run (and between the two gates of one run).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// 64 random bytes that are not valid client traffic: should the draw
/// happen to be (a run of valid frames, maybe cut short at the end), it is
/// drawn again, so every burst breaks a rule the gate enforces.
pub fn junk(rng: &mut Rng) -> [u8; JUNK_LEN] {
    loop {
        let mut out = [0u8; JUNK_LEN];
        for chunk in out.chunks_mut(8) {
            let r = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        if !is_valid_client_traffic(&out) {
            return out;
        }
    }
}

/// True when `bytes` is a run of `#<check><6-bit payload>!` frames with bare
/// `*` between them, the last one possibly incomplete: what a gate must
/// accept from a client.
pub fn is_valid_client_traffic(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'*' => i += 1,
            b'#' => {
                let Some(&check) = bytes.get(i + 1) else {
                    return true;
                };
                let check_ok = (0x21..=0x7E).contains(&check)
                    && !matches!(check, b'#' | b'!' | b'%' | b'$' | b'/' | b'*');
                if !check_ok {
                    return false;
                }
                i += 2;
                while i < bytes.len() && codec::is_alphabet(bytes[i]) {
                    i += 1;
                }
                match bytes.get(i) {
                    None => return true,
                    Some(b'!') => i += 1,
                    Some(_) => return false,
                }
            }
            _ => return false,
        }
    }
    true
}

/// Watches a stream for the first complete `#...!` frame, cut by the core's
/// client-frame splitter.
#[derive(Debug, Clone)]
pub struct ReplyWatch {
    splitter: Splitter,
}

impl Default for ReplyWatch {
    fn default() -> Self {
        ReplyWatch {
            // The answer to a query is a few hundred bytes at most.
            splitter: Splitter::client(64 * 1024),
        }
    }
}

impl ReplyWatch {
    /// Feeds bytes read from the gate; true once a frame has ended.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut whole = false;
        self.splitter
            .push(bytes, |piece| whole |= matches!(piece, Piece::Frame(_)));
        whole
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_valid_and_decodes_to_its_body() {
        let f = query("player7", 1234);
        assert!(is_valid_client_traffic(&f));
        assert_eq!(&f[..2], b"#1");
        assert_eq!(f.last(), Some(&b'!'));
        let msg = Message::decode(&f[2..f.len() - 1], HeaderLayout::Classic).expect("decodes");
        assert_eq!(msg.header.ident, ids::CM_QUERYCHR);
        assert_eq!(msg.body, b"player7/1234");
    }

    #[test]
    fn junk_is_seeded_and_never_valid() {
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        assert_eq!(junk(&mut a), junk(&mut b));
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(!is_valid_client_traffic(&junk(&mut r)));
        }
    }

    #[test]
    fn validity_follows_the_client_rules() {
        assert!(is_valid_client_traffic(b"*#1<<<!*#2"));
        assert!(is_valid_client_traffic(b"#"));
        assert!(!is_valid_client_traffic(b"#1<%<!"));
        assert!(!is_valid_client_traffic(b"#!"));
        assert!(!is_valid_client_traffic(b"x#1<!"));
    }

    #[test]
    fn a_reply_is_seen_across_reads() {
        let mut w = ReplyWatch::default();
        assert!(!w.feed(b"!junk"));
        assert!(!w.feed(b"#<<<"));
        assert!(w.feed(b"<<!"));
    }
}
