//! Zones: several gates in one process that count each client address once.

use std::time::Instant;

use crate::block_list::BlockList;
use crate::config::{Config, ConfigError};
use crate::event::{Action, Event};
use crate::gate::Gate;
use crate::limits::IpLimits;
use crate::rng::{derived_seed, Purpose};

mod operator;

/// A zone's handle in its [`Zones`], given by [`Zones::add`]. Handing one
/// to another `Zones` is a driver bug (it may panic, like a bad index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneId(usize);

impl ZoneId {
    /// The zone's position, in the order the zones were added (0 first).
    pub fn index(self) -> usize {
        self.0
    }
}

/// The gates (zones: one per game server line, each with its own
/// DBServer) of one process. Built [`Zones::shared`], they share one per-IP
/// table: the connect windows, the sessions per IP, the operator's block
/// list and the blocks a DBServer ordered count a client address once
/// across every zone, so a client cannot get twice the allowance by
/// connecting to two zones. Built [`Zones::separate`], each keeps its own.
///
/// Each zone keeps its own drain contract (see [`Gate`]): the driver reports
/// a zone's events with [`Zones::handle`] and drains that zone's
/// [`Zones::poll_action`]. Only the per-IP state is common.
#[derive(Debug)]
pub struct Zones {
    gates: Vec<Gate>,
    /// The table every zone uses, when they share one.
    shared: Option<IpLimits>,
}

impl Zones {
    /// No zones yet; the zones added will share one per-IP table.
    pub fn shared() -> Zones {
        Zones {
            gates: Vec::new(),
            shared: Some(IpLimits::new(0)),
        }
    }

    /// No zones yet; each zone added keeps its own per-IP table.
    pub fn separate() -> Zones {
        Zones {
            gates: Vec::new(),
            shared: None,
        }
    }

    /// True when the zones share one per-IP table.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Adds a zone: a gate made from `config` at `now` with `seed` (give
    /// each zone its own seed, so their session ids differ). Its first
    /// action, the connect request, is waiting in its queue.
    pub fn add(&mut self, config: Config, now: Instant, seed: u64) -> Result<ZoneId, ConfigError> {
        let gate = Gate::new(config, now, seed)?;
        if self.gates.is_empty() {
            if let Some(limits) = &mut self.shared {
                // The shared table is made before any seed is known; the
                // first zone's seed keys its hash, as each gate's keys its own.
                *limits = IpLimits::new(derived_seed(seed, Purpose::IpHash));
            }
        }
        self.gates.push(gate);
        Ok(ZoneId(self.gates.len() - 1))
    }

    /// The zones' handles, in the order they were added.
    pub fn ids(&self) -> impl Iterator<Item = ZoneId> {
        (0..self.gates.len()).map(ZoneId)
    }

    /// Reports one event of zone `zone` (the drain contract of [`Gate`]).
    pub fn handle(&mut self, zone: ZoneId, now: Instant, event: Event<'_>) {
        let gate = &mut self.gates[zone.0];
        match &mut self.shared {
            Some(limits) => gate.engine_with(limits).handle(now, event),
            None => gate.handle(now, event),
        }
    }

    /// The next action of zone `zone`.
    #[must_use = "an action not carried out is lost: drain until None"]
    pub fn poll_action(&mut self, zone: ZoneId) -> Option<Action> {
        self.gates[zone.0].poll_action()
    }

    /// Gives every zone the operator's block list at once and closes the
    /// live sessions it now names, in each zone; the actions wait in each
    /// zone's queue. (Separate zones with lists of their own get theirs
    /// through [`Zones::handle`] with [`Event::BlockListChanged`].)
    pub fn set_block_list(&mut self, now: Instant, list: &BlockList) {
        for id in 0..self.gates.len() {
            self.handle(ZoneId(id), now, Event::BlockListChanged(list));
        }
    }

    /// Zone `zone`'s gate, for its deadline, counters and queries. For
    /// shared zones its own [`Gate::tracked_ips`] is always 0: see
    /// [`Zones::tracked_ips`].
    pub fn gate(&self, zone: ZoneId) -> &Gate {
        &self.gates[zone.0]
    }

    /// Client addresses in the per-IP table zone `zone` uses (the shared
    /// one, for shared zones).
    pub fn tracked_ips(&self, zone: ZoneId) -> usize {
        match &self.shared {
            Some(limits) => limits.tracked(),
            None => self.gates[zone.0].tracked_ips(),
        }
    }
}
