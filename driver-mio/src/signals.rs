//! Operator signals as poll events: SIGINT/SIGTERM start the graceful drain
//! (a second one exits at once), SIGHUP reloads the block lists. On Windows,
//! Ctrl-C, Ctrl-Break and console close start the drain.

use std::io;
use std::sync::Arc;

use mio::{Registry, Token};

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT, SIGTERM (Ctrl-C, Ctrl-Break, console close on Windows).
    Stop,
    /// SIGHUP.
    Reload,
}

#[cfg(unix)]
mod imp {
    use super::*;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook_mio::v1_0::Signals;

    /// The process's signals, readable through mio.
    pub struct SignalSource(Signals);

    impl SignalSource {
        pub fn new() -> io::Result<Self> {
            Ok(SignalSource(Signals::new([SIGINT, SIGTERM, SIGHUP])?))
        }

        /// Registers the signal pipe under `token` (the loop's `waker` is
        /// for Windows, where signals have no pipe).
        pub fn register(
            &mut self,
            registry: &Registry,
            token: Token,
            _waker: Option<&Arc<mio::Waker>>,
        ) -> io::Result<()> {
            registry.register(&mut self.0, token, mio::Interest::READABLE)
        }

        pub fn pending(&mut self) -> Vec<Signal> {
            self.0
                .pending()
                .map(|s| {
                    if s == SIGHUP {
                        Signal::Reload
                    } else {
                        Signal::Stop
                    }
                })
                .collect()
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Console control events, forwarded to the poll through a waker.
    pub struct SignalSource {
        count: Arc<AtomicU32>,
        seen: u32,
        waker: Option<Arc<mio::Waker>>,
    }

    impl SignalSource {
        pub fn new() -> io::Result<Self> {
            Ok(SignalSource {
                count: Arc::new(AtomicU32::new(0)),
                seen: 0,
                waker: None,
            })
        }

        /// Wakes the loop on a console event: through the loop's own
        /// `waker` when it has one (mio allows a single `Waker` per `Poll`, a
        /// second one panics in debug builds; the loop then reads the
        /// signals when that waker fires), else through a waker of its own
        /// under `token`.
        pub fn register(
            &mut self,
            registry: &Registry,
            token: Token,
            waker: Option<&Arc<mio::Waker>>,
        ) -> io::Result<()> {
            let waker = match waker {
                Some(w) => Arc::clone(w),
                None => Arc::new(mio::Waker::new(registry, token)?),
            };
            self.waker = Some(waker.clone());
            let count = self.count.clone();
            // ctrlc's "termination" feature covers Ctrl-C, Ctrl-Break and
            // console close.
            ctrlc::set_handler(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = waker.wake();
            })
            .map_err(|e| io::Error::other(e.to_string()))
        }

        pub fn pending(&mut self) -> Vec<Signal> {
            let now = self.count.load(Ordering::SeqCst);
            let n = now.saturating_sub(self.seen);
            self.seen = now;
            vec![Signal::Stop; n as usize]
        }
    }
}

pub use imp::SignalSource;

impl std::fmt::Debug for SignalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalSource")
    }
}
