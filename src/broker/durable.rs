//! The broker's side of durable histories (a channel's `history_durable`
//! option): what the history files must do after a round, and the
//! histories read back at start. The broker does no I/O: the glue takes
//! [`HistoryWrite`]s once per round ([`Broker::take_history_writes`]) and
//! writes them, after the round's deliveries and replies were offered.
//!
//! So a broadcast is delivered and acknowledged in the round that numbers
//! it, and reaches the file (the kernel's page cache) at the end of that
//! round: a process crash in between loses it from the file. That is also
//! why a file cut short is never continued (see
//! [`crate::storage::history_files`]).

use std::time::Instant;

use crate::name::{ChannelName, VhostPath};
use crate::storage::history_log::Item;

use super::history::History;
use super::Broker;

/// One thing for the history files to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryWrite {
    /// Append records to the channel's file (creating it if needed).
    Append {
        /// The vhost.
        vhost: VhostPath,
        /// The channel.
        channel: ChannelName,
        /// RUN and MESSAGE records.
        records: Vec<u8>,
        /// About the size of the file after a compaction.
        live: u64,
    },
    /// Replace the channel's file with the whole history.
    Rewrite {
        /// The vhost.
        vhost: VhostPath,
        /// The channel.
        channel: ChannelName,
        /// RUN and MESSAGE records.
        records: Vec<u8>,
    },
    /// Remove the channel's file.
    Remove {
        /// The vhost.
        vhost: VhostPath,
        /// The channel.
        channel: ChannelName,
    },
}

impl HistoryWrite {
    /// A [`HistoryWrite::Rewrite`].
    pub(super) fn rewrite(vhost: &VhostPath, channel: &ChannelName, records: Vec<u8>) -> Self {
        HistoryWrite::Rewrite {
            vhost: vhost.clone(),
            channel: channel.clone(),
            records,
        }
    }

    /// A [`HistoryWrite::Remove`].
    pub(super) fn remove(vhost: &VhostPath, channel: &ChannelName) -> Self {
        HistoryWrite::Remove {
            vhost: vhost.clone(),
            channel: channel.clone(),
        }
    }
}

impl Broker {
    /// What the history files must do since the last call, in order:
    /// rewrites and removals first (each one covers what its history
    /// journaled before it), then each durable history's new records.
    pub fn take_history_writes(&mut self) -> Vec<HistoryWrite> {
        let mut out = std::mem::take(&mut self.history_writes);
        for (vhost, channel) in std::mem::take(&mut self.history_dirty) {
            let Some(history) = self.history_mut(&vhost, &channel) else {
                continue;
            };
            let records = history.take_journal();
            if !records.is_empty() {
                let live = history.file_bytes();
                out.push(HistoryWrite::Append {
                    vhost,
                    channel,
                    records,
                    live,
                });
            }
        }
        out
    }

    /// The whole durable history of a channel as records, for a new file;
    /// `None` when the channel has no durable history.
    pub fn history_snapshot(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
    ) -> Option<Vec<u8>> {
        let history = self.history_mut(vhost, channel)?;
        history
            .is_durable()
            .then(|| history.snapshot(Instant::now()))
    }

    /// Fills the durable history of a channel with what its file held
    /// (`trusted`: the run may go on, see
    /// [`crate::storage::history_files`]). `false` when the channel does
    /// not exist or its history is not durable (the file is not wanted).
    pub fn restore_history(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        items: &[Item<'_>],
        trusted: bool,
    ) -> bool {
        let budget = self
            .limits
            .max_history_bytes
            .saturating_sub(self.history_bytes);
        let clock = self.clock;
        let Some(history) = self.history_mut(vhost, channel) else {
            return false;
        };
        if !history.is_durable() {
            return false;
        }
        let before = history.bytes();
        history.restore(items, trusted, clock, Instant::now(), budget);
        let after = history.bytes();
        self.history_bytes = (self.history_bytes + after).saturating_sub(before);
        self.outbox.stats.history_bytes = self.history_bytes as u64;
        true
    }

    fn history_mut(&mut self, vhost: &VhostPath, channel: &ChannelName) -> Option<&mut History> {
        self.vhosts
            .get_mut(vhost)?
            .channels
            .get_mut(channel)?
            .history
            .as_mut()
    }
}
