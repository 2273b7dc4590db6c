//! Live reload of the settings.

use std::time::Instant;

use serde_json::{json, Value};

use super::Server;

impl Server {
    /// Reloads what can be reloaded; the answer lists what changed.
    pub(super) fn reload_everything(&mut self, now: Instant) -> Result<Value, String> {
        self.reload_block_lists(now);
        self.ops
            .events
            .push("reload", None, "block and record lists".into());
        Ok(json!({ "reloaded": ["block_list", "record_list"] }))
    }
}
