//! The per-IP table as the operator's console shows it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{IpLimits, WINDOW_LONG};

/// One client prefix of the per-IP table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpView {
    /// The prefix the rules count it under (the address itself for IPv4 /32).
    pub prefix: IpAddr,
    /// Its live sessions.
    pub sessions: u32,
    /// Its connects within the current 10 s window (0 once it has passed).
    pub connects_10s: u32,
    /// Time left of a temporary block (a broken connect window, `%+B`).
    pub blocked_for: Option<Duration>,
    /// Blocked until the gate restarts by the DBServer (`%+T`, `%+M`).
    pub blocked_for_good: bool,
}

impl IpLimits {
    /// Every prefix with state at `now`, and the DBServer's permanent
    /// blocks, in address order.
    pub(crate) fn views(&self, now: Instant) -> Vec<IpView> {
        let mut out: Vec<IpView> = self
            .entries
            .iter()
            .map(|(prefix, e)| IpView {
                prefix: *prefix,
                sessions: e.sessions,
                connects_10s: if now.saturating_duration_since(e.long_start) < WINDOW_LONG {
                    e.long_count
                } else {
                    0
                },
                blocked_for: e
                    .blocked_until
                    .filter(|t| *t > now)
                    .map(|t| t.saturating_duration_since(now)),
                blocked_for_good: self.ordered.contains(prefix),
            })
            .collect();
        for prefix in self
            .ordered
            .iter()
            .filter(|p| !self.entries.contains_key(p))
        {
            out.push(IpView {
                prefix: *prefix,
                sessions: 0,
                connects_10s: 0,
                blocked_for: None,
                blocked_for_good: true,
            });
        }
        out.sort_by_key(|v| v.prefix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::test_util::t0;

    #[test]
    fn the_view_shows_sessions_connects_and_blocks() {
        let cfg = Config::default();
        let now = t0();
        let mut t = IpLimits::new(0);
        let a: IpAddr = "198.51.100.1".parse().expect("ip");
        let b: IpAddr = "198.51.100.2".parse().expect("ip");
        let c: IpAddr = "198.51.100.3".parse().expect("ip");
        for _ in 0..2 {
            assert!(t.admit(a, now, &cfg, || None).is_ok());
        }
        assert!(t.block_temporarily(b, now, now + Duration::from_secs(60), &cfg));
        assert!(t.block_permanently(c, &cfg));
        let v = t.views(now + Duration::from_secs(1));
        assert_eq!(v.len(), 3);
        assert_eq!((v[0].prefix, v[0].sessions, v[0].connects_10s), (a, 2, 2));
        assert_eq!(v[1].blocked_for, Some(Duration::from_secs(59)));
        assert!(v[2].blocked_for_good && v[2].sessions == 0);
        let later = t.views(now + Duration::from_secs(61));
        assert_eq!(later[0].connects_10s, 0, "the window passed");
        assert_eq!(later[1].blocked_for, None, "the block ended");
    }
}
