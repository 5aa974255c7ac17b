//! A handler's MULTICAST: one message for many sessions. It is framed once
//! and handed to tcp as one MULTICAST listing every client stream that can
//! take it now; a connection that compresses, or has bytes or credit
//! waiting, gets it through the one-connection path instead.

use super::frame::{write_header, FIN, MAX_SERVER_HEADER_LEN};
use super::nukleus::{Phase, WsNukleus, FRAME_PADDING};
use crate::nukleus::frame::{self, StreamList};

/// The most client streams one MULTICAST to tcp lists.
const MAX_MULTICAST: usize = 4096;

impl WsNukleus {
    pub(super) fn on_handler_multicast(
        &mut self,
        source: usize,
        streams: StreamList<'_>,
        payload: &[u8],
    ) {
        let Some((&flags, message)) = payload.split_first() else {
            return;
        };
        self.metrics.multicasts.add(1);
        // A control frame goes each connection's own way; anything else is
        // framed the same for every connection that does not compress.
        let plain = flags & 0x08 == 0;
        let mut header = [0u8; MAX_SERVER_HEADER_LEN];
        let n = write_header(&mut header, flags & (FIN | 0x0F), message.len());
        let len = (n + message.len()) as i64;
        let mut current = None;
        self.multicast.clear();
        self.multicast_keys.clear();
        for stream in streams.iter() {
            let Some(&key) = self.by_handler_in.get(&(source, stream)) else {
                self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
                continue;
            };
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !plain || conn.compresses || !matches!(conn.phase, Phase::Open(_)) {
                self.on_handler_data(key, payload);
                continue;
            }
            let client = &mut conn.client;
            let target = client.target;
            let most = (self.plumbing.targets[target].ring().max_body())
                .saturating_sub(n + message.len() + 64)
                / 8;
            // Anything in the way of a plain write now: the one-connection
            // path, which queues or compresses.
            if client.ended
                || client.end_when_flushed
                || !client.pending.is_empty()
                || client.credit < len
                || most < 2
            {
                self.on_handler_data(key, payload);
                continue;
            }
            client.credit -= len;
            conn.handler_granted -= payload.len() as i64 + i64::from(FRAME_PADDING);
            let stream = client.stream;
            if !conn.touched {
                conn.touched = true;
                self.touched.push(key);
            }
            if let Some(previous) =
                current.filter(|&c| c != target || self.multicast.len() >= most.min(MAX_MULTICAST))
            {
                self.write_multicast(previous, &header[..n], message);
            }
            current = Some(target);
            self.multicast.push(stream);
            self.multicast_keys.push(key);
        }
        if let Some(target) = current {
            self.write_multicast(target, &header[..n], message);
        }
    }

    /// Writes the MULTICAST listed so far to tcp; if the ring is full, each
    /// listed connection queues the frame as it would a refused DATA.
    fn write_multicast(&mut self, target: usize, header: &[u8], message: &[u8]) {
        if self.multicast.is_empty() {
            return;
        }
        let written = self.plumbing.targets[target]
            .write(frame::MULTICAST, &[self.multicast.head(), header, message]);
        if written {
            self.metrics
                .multicast_streams
                .add(self.multicast_keys.len() as u64);
        } else {
            let len = (header.len() + message.len()) as i64;
            for &key in &self.multicast_keys {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.client.credit += len;
                    conn.client.pending.extend_from_slice(header);
                    conn.client.pending.extend_from_slice(message);
                }
            }
        }
        self.multicast.clear();
        self.multicast_keys.clear();
    }
}
