//! The event output of a command that emits outside a sidecar (`tool call`, the campus
//! commands): see `lumenflow_conductor::command_delivery`. Held while the command emits;
//! dropping it sends what is still queued and warns about events the control plane did not
//! take (they keep their ledger stamp). Commands drop it before printing their answer: output
//! to a closed pipe ends the process at once, which would cut the sending short.

use std::path::Path;
use std::sync::Arc;

use lumenflow_conductor::command_delivery::{CommandDelivery, NoDelivery};
use lumenflow_kernel::events::emit::EventSink;
use lumenflow_kernel::manifest::PackManifest;

use crate::output::{warn, CliError};

pub struct CommandEvents {
    delivery: Option<CommandDelivery>,
    json: bool,
}

impl CommandEvents {
    pub fn open(
        workspace_dir: &Path,
        manifests: &[PackManifest],
        json: bool,
    ) -> Result<CommandEvents, CliError> {
        let delivery = CommandDelivery::open(workspace_dir, manifests)
            .map_err(|e| CliError::new("EVENT_DELIVERY_UNAVAILABLE", e))?;
        Ok(CommandEvents { delivery, json })
    }

    /// Where emitted events go after their ledger stamp.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        match &self.delivery {
            Some(d) => d.sink(),
            None => Arc::new(NoDelivery),
        }
    }
}

impl Drop for CommandEvents {
    fn drop(&mut self) {
        let Some(delivery) = self.delivery.take() else {
            return;
        };
        let report = delivery.finish();
        if report.not_sent > 0 {
            warn(
                self.json,
                &format!(
                    "{} event(s) not delivered to the control plane{}; they stay in the local ledger (`lumenflow events tail`)",
                    report.not_sent,
                    report
                        .error
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            );
        }
    }
}
