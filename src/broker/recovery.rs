//! The broker's side of channel histories: numbering and keeping
//! broadcasts, and the answers that read them: `subscribe` (with `since`)
//! and the `history` event.
//!
//! A `subscribe` with `since` is answered, in one step of the broker
//! thread, with `subscribed` (saying `recovered` and the channel's last
//! position) and then every message after `since`; live messages follow.
//! Nothing can come between: the seam has no gap and no duplicate. The
//! replay is offered like any message, against the session's credit, so
//! it is bounded to half of `limits.max_pending_bytes`: a longer gap
//! answers `recovered: false` rather than closing the session as a slow
//! consumer. The client then pages through the gap with `history` and
//! `since`, and subscribes again with the last position it read.

use std::time::Instant;

use crate::name::{ChannelName, Permissions, VhostPath};
use crate::protocol::{
    encode_history, encode_subscribed, stamp_delivery, ClientError, ErrorId, Position,
};

use super::history::{Pushed, Recovery};
use super::io::Outlet;
use super::request::channel_error;
use super::session::SessionKey;
use super::stats::BrokerStats;
use super::Broker;

const HISTORY: &str = "history";

/// Messages a `history` answer holds unless the client asks for fewer.
const HISTORY_LIMIT: usize = 100;

impl Broker {
    /// When `channel` keeps a history: numbers the broadcast in `self.buf`
    /// (this node orders it), adds its position to it and keeps it.
    pub(super) fn sequence(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
    ) -> Option<Position> {
        let history = self
            .vhosts
            .get_mut(vhost)?
            .channels
            .get_mut(channel)?
            .history
            .as_mut()?;
        let clean = history.journal_is_empty();
        let (position, freed) = history.sequence(&mut self.epochs);
        self.history_bytes = self.history_bytes.saturating_sub(freed);
        if !stamp_delivery(&mut self.buf, position) {
            return None;
        }
        let budget = self
            .limits
            .max_history_bytes
            .saturating_sub(self.history_bytes);
        let pushed = history.push(position, &self.buf, Instant::now(), budget);
        if clean && !history.journal_is_empty() {
            self.history_dirty.push((vhost.clone(), channel.clone()));
        }
        Self::account(&mut self.history_bytes, &mut self.outbox.stats, pushed);
        Some(position)
    }

    /// Keeps a delivery another node ordered at `position`, when `channel`
    /// keeps a history.
    pub(super) fn keep(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        position: Position,
        delivery: &[u8],
    ) {
        let Some(history) = self
            .vhosts
            .get_mut(vhost)
            .and_then(|v| v.channels.get_mut(channel))
            .and_then(|c| c.history.as_mut())
        else {
            return;
        };
        let budget = self
            .limits
            .max_history_bytes
            .saturating_sub(self.history_bytes);
        let clean = history.journal_is_empty();
        let pushed = history.push(position, delivery, Instant::now(), budget);
        if clean && !history.journal_is_empty() {
            self.history_dirty.push((vhost.clone(), channel.clone()));
        }
        Self::account(&mut self.history_bytes, &mut self.outbox.stats, pushed);
    }

    /// Counts what a push into a history did.
    fn account(total: &mut usize, stats: &mut BrokerStats, pushed: Pushed) {
        *total = (*total + pushed.added).saturating_sub(pushed.freed);
        stats.history_bytes = *total as u64;
        if !pushed.kept {
            stats.history_dropped += 1;
        }
    }

    /// Bytes a channel's history gave back (reads drop what aged out).
    fn freed_history(&mut self, freed: usize) {
        self.history_bytes = self.history_bytes.saturating_sub(freed);
        self.outbox.stats.history_bytes = self.history_bytes as u64;
    }

    /// Says `subscribed` to `key`, then replays what it missed after
    /// `since`.
    pub(super) fn answer_subscribe(
        &mut self,
        key: SessionKey,
        vhost: &VhostPath,
        name: &ChannelName,
        since: Option<Position>,
        outlet: &mut dyn Outlet,
    ) {
        let budget = self.limits.max_pending_bytes / 2;
        let mut extra = self.presence_extra(vhost, name);
        let mut freed = 0;
        let mut replay: Vec<&[u8]> = Vec::new();
        let history = self
            .vhosts
            .get_mut(vhost)
            .and_then(|v| v.channels.get_mut(name))
            .and_then(|c| c.history.as_mut());
        match history {
            None => extra.recovered = since.map(|_| false),
            Some(history) => {
                extra.last = history.last();
                if let Some(since) = since {
                    let (recovery, dropped) = history.since(since, Instant::now());
                    freed = dropped;
                    extra.recovered = Some(match recovery {
                        Recovery::Complete(missed)
                            if missed.iter().map(|m| m.len()).sum::<usize>() <= budget =>
                        {
                            replay = missed;
                            true
                        }
                        _ => false,
                    });
                }
            }
        }
        self.buf.clear();
        encode_subscribed(&mut self.buf, name.as_str(), &extra.borrowed());
        self.outbox.offer(outlet, key, &self.buf);
        for message in replay {
            self.outbox.offer(outlet, key, message);
        }
        self.freed_history(freed);
    }

    /// `history`: needs READ; the channel must exist. Answers the newest
    /// messages, or (with `since`) the first ones after it, at most
    /// `limit` (default 100) and half of `max_pending_bytes` in all. A
    /// channel without a history answers an empty list.
    pub(super) fn history(
        &mut self,
        key: SessionKey,
        name: &ChannelName,
        limit: Option<u64>,
        since: Option<Position>,
        outlet: &mut dyn Outlet,
    ) -> Result<(), ClientError> {
        self.require(key, Permissions::READ, HISTORY, Some(name))?;
        let Some(vhost) = self.sessions.get(&key).map(|s| s.vhost.clone()) else {
            return Ok(());
        };
        let Some(channel) = self
            .vhosts
            .get_mut(&vhost)
            .and_then(|v| v.channels.get_mut(name))
        else {
            return Err(channel_error(ErrorId::ChannelNotFound, HISTORY, name));
        };
        let limit = limit.map_or(HISTORY_LIMIT, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let budget = self.limits.max_pending_bytes / 2;
        let now = Instant::now();
        let mut freed = 0;
        self.buf.clear();
        match channel.history.as_mut() {
            None => encode_history(
                &mut self.buf,
                name.as_str(),
                None,
                since.map(|_| false),
                &[],
            ),
            Some(history) => {
                let last = history.last();
                let (recovered, messages) = match since {
                    None => {
                        let (newest, dropped) = history.newest(limit, budget, now);
                        freed = dropped;
                        (None, newest)
                    }
                    Some(since) => {
                        let (recovery, dropped) = history.since(since, now);
                        freed = dropped;
                        match recovery {
                            Recovery::Complete(after) => (Some(true), first(after, limit, budget)),
                            Recovery::Lost => (Some(false), Vec::new()),
                        }
                    }
                };
                encode_history(&mut self.buf, name.as_str(), last, recovered, &messages);
            }
        }
        self.outbox.offer(outlet, key, &self.buf);
        self.freed_history(freed);
        Ok(())
    }
}

/// The first messages of `all`, at most `limit` and `budget` bytes.
fn first(all: Vec<&[u8]>, limit: usize, budget: usize) -> Vec<&[u8]> {
    let mut taken = 0;
    all.into_iter()
        .take(limit)
        .take_while(|m| {
            taken += m.len();
            taken <= budget
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::first;

    #[test]
    fn first_stops_at_the_limit_or_the_budget() {
        let all: Vec<&[u8]> = vec![b"aa", b"bb", b"cc"];
        assert_eq!(first(all.clone(), 2, 100), vec![&b"aa"[..], b"bb"]);
        assert_eq!(first(all.clone(), 10, 5), vec![&b"aa"[..], b"bb"]);
        assert!(first(all, 10, 1).is_empty());
    }
}
