//! The operator's calls on a zone (see `gate/operator.rs`), with the
//! per-IP table the zone uses.

use std::time::Instant;

use super::{ZoneId, Zones};
use crate::config::Config;
use crate::gate::ReconfigureError;
use crate::limits::IpView;

impl Zones {
    /// The per-IP table zone `zone` uses (the shared one for shared zones)
    /// at `now`.
    pub fn ip_views(&self, zone: ZoneId, now: Instant) -> Vec<IpView> {
        match &self.shared {
            Some(limits) => limits.views(now),
            None => self.gates[zone.0].ip_views(now),
        }
    }

    /// The operator kicks session `id` of zone `zone` (see [`Gate::kick`]).
    ///
    /// [`Gate::kick`]: crate::Gate::kick
    pub fn kick(&mut self, zone: ZoneId, now: Instant, id: u32) -> bool {
        let gate = &mut self.gates[zone.0];
        match &mut self.shared {
            Some(limits) => gate.engine_with(limits).kick_by_operator(now, id),
            None => gate.kick(now, id),
        }
    }

    /// Zone `zone` runs on `config` from `now` on (see
    /// [`Gate::reconfigure`]).
    ///
    /// [`Gate::reconfigure`]: crate::Gate::reconfigure
    pub fn reconfigure(
        &mut self,
        zone: ZoneId,
        now: Instant,
        config: Config,
    ) -> Result<(), ReconfigureError> {
        let gate = &mut self.gates[zone.0];
        match &mut self.shared {
            Some(limits) => gate.engine_with(limits).reconfigure(now, config),
            None => gate.reconfigure(now, config),
        }
    }
}
