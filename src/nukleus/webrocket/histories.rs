//! The durable history files on the broker thread: read back into the
//! broker at start, written once per round, closed at a clean stop. The
//! layout and the recovery rules are in [`crate::storage::history_files`];
//! when each write happens, in [`crate::broker`]'s `durable` module.

use std::path::Path;

use crate::broker::{Broker, HistoryWrite};
use crate::limits::{Limits, MAX_HISTORY_RECORD};
use crate::storage::history_files::{HistoryFiles, Next};

/// Opens the history files under `storage_dir` and fills the broker's
/// durable histories from them; files no channel wants are removed. A
/// directory that cannot be opened is logged, and durable histories are
/// kept in memory only (`None`).
pub(super) fn open(
    broker: &mut Broker,
    storage_dir: &Path,
    limits: &Limits,
) -> Option<HistoryFiles> {
    let max_record = MAX_HISTORY_RECORD.max(limits.max_history_bytes_per_channel + 1024);
    let (mut files, loaded) = match HistoryFiles::open(storage_dir, max_record) {
        Ok(opened) => opened,
        Err(error) => {
            tracing::error!(dir = %storage_dir.display(), %error,
                "cannot open the durable history files; histories are kept in memory only");
            return None;
        }
    };
    for one in loaded {
        let items = one.items();
        if broker.restore_history(&one.vhost, &one.channel, &items, one.trusted) {
            tracing::info!(vhost = %one.vhost, channel = %one.channel, records = items.len(),
                trusted = one.trusted, "durable history read back");
            // A fresh file under this boot, holding what was kept.
            let records = broker
                .history_snapshot(&one.vhost, &one.channel)
                .unwrap_or_default();
            files.rewrite(&one.vhost, &one.channel, &records);
        } else {
            files.remove(&one.vhost, &one.channel);
        }
    }
    flush(broker, &mut files);
    Some(files)
}

/// Hands what the round added to the files.
pub(super) fn flush(broker: &mut Broker, files: &mut HistoryFiles) {
    for write in broker.take_history_writes() {
        match write {
            HistoryWrite::Append {
                vhost,
                channel,
                records,
                live,
            } => {
                if files.append(&vhost, &channel, &records, live) == Next::Rewrite {
                    if let Some(records) = broker.history_snapshot(&vhost, &channel) {
                        files.rewrite(&vhost, &channel, &records);
                    }
                }
            }
            HistoryWrite::Rewrite {
                vhost,
                channel,
                records,
            } => files.rewrite(&vhost, &channel, &records),
            HistoryWrite::Remove { vhost, channel } => files.remove(&vhost, &channel),
        }
    }
}
