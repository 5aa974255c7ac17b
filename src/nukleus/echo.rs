//! The echo nukleus: answers every ws stream with a reply stream carrying the
//! same messages back, for conformance and benchmark tools
//! (`--echo-path`).
//!
//! Credit passes straight through: the credit ws gives for a reply stream is
//! granted, with the same padding, on the matching initial stream, so every
//! message received can be sent back at once and nothing is buffered here.

use std::sync::Arc;
use std::time::Instant;

use super::frame::{self, Frame, StreamId, StreamIds};
use super::plumbing::{
    drain, end_removed, reset_as_frame, Frames, Neighbours, Pending, Plumbing, Side,
};
use super::runner::{Agent, Signals};
use super::{IdMap, StreamMap};
use crate::nukleus::command::Response;

struct Echo {
    source: usize,
    initial: StreamId,
    target: usize,
    reply: StreamId,
}

/// The echo nukleus.
pub struct EchoNukleus {
    plumbing: Plumbing,
    by_initial: StreamMap<Echo>,
    by_reply: IdMap<(usize, StreamId)>,
    ids: StreamIds,
    commands: Vec<Pending>,
}

impl EchoNukleus {
    /// Creates the nukleus; `signals` must already hold its thread's signal.
    pub fn new(
        run_dir: &std::path::Path,
        ring_capacity: usize,
        signals: Arc<Signals>,
    ) -> std::io::Result<Self> {
        Ok(EchoNukleus {
            plumbing: Plumbing::create(run_dir, "echo", ring_capacity, signals)?,
            by_initial: StreamMap::default(),
            by_reply: IdMap::default(),
            ids: StreamIds::reply(),
            commands: Vec::new(),
        })
    }

    fn on_frame(&mut self, source: usize, frame: Frame<'_>) {
        if let Frame::Multicast { streams, payload } = frame {
            for stream in streams.iter() {
                self.on_frame(source, Frame::Data { stream, payload });
            }
            return;
        }
        let key = (source, frame.stream());
        match frame {
            Frame::Begin { stream, .. } if stream.is_initial() => {
                let name = &self.plumbing.sources[source].name;
                let Some(target) = self.plumbing.target_index(name) else {
                    self.plumbing.sources[source].throttle(frame::RESET, &[&stream.bytes()]);
                    return;
                };
                let reply = self.ids.next_id();
                self.plumbing.targets[target]
                    .write(frame::BEGIN, &[&frame::begin_head(reply, stream.0)]);
                self.by_reply.insert(reply.0, key);
                self.by_initial.insert(
                    key,
                    Echo {
                        source,
                        initial: stream,
                        target,
                        reply,
                    },
                );
            }
            Frame::Data { payload, .. } => {
                let Some(echo) = self.by_initial.get(&key) else {
                    return;
                };
                let reply = echo.reply.bytes();
                if !self.plumbing.targets[echo.target].write(frame::DATA, &[&reply, payload]) {
                    // A hole in the echoed stream would be worse than no
                    // stream: a full ring aborts this one, visibly.
                    if let Some(echo) = self.by_initial.remove(&key) {
                        self.by_reply.remove(&echo.reply.0);
                        self.plumbing.targets[echo.target].write(frame::RESET, &[&reply]);
                        let initial = echo.initial.bytes();
                        self.plumbing.sources[echo.source].throttle(frame::RESET, &[&initial]);
                    }
                }
            }
            Frame::End { .. } | Frame::Reset { .. } => {
                if let Some(echo) = self.by_initial.remove(&key) {
                    self.by_reply.remove(&echo.reply.0);
                    let kind = match frame {
                        Frame::End { .. } => frame::END,
                        _ => frame::RESET,
                    };
                    self.plumbing.targets[echo.target].write(kind, &[&echo.reply.bytes()]);
                }
            }
            Frame::Begin { .. } | Frame::Window { .. } | Frame::Multicast { .. } => {}
        }
    }

    fn on_throttle(&mut self, frame: Frame<'_>) {
        let Some(&key) = self.by_reply.get(&frame.stream().0) else {
            return;
        };
        let Some(echo) = self.by_initial.get(&key) else {
            return;
        };
        let source = &mut self.plumbing.sources[echo.source];
        match frame {
            Frame::Window {
                credit, padding, ..
            } => {
                let body = frame::window_body(echo.initial, credit, padding);
                source.throttle(frame::WINDOW, &[&body]);
            }
            Frame::Reset { .. } => {
                source.throttle(frame::RESET, &[&echo.initial.bytes()]);
                self.by_reply.remove(&frame.stream().0);
                self.by_initial.remove(&key);
            }
            _ => {}
        }
    }
}

impl Frames for EchoNukleus {
    fn plumbing(&self) -> &Plumbing {
        &self.plumbing
    }

    fn on_source_frame(&mut self, source: usize, frame: Frame<'_>) {
        self.on_frame(source, frame);
    }

    fn on_throttle_frame(&mut self, _target: usize, frame: Frame<'_>) {
        self.on_throttle(frame);
    }
}

impl Neighbours for EchoNukleus {
    fn plumbing_mut(&mut self) -> &mut Plumbing {
        &mut self.plumbing
    }

    fn streams_via(&self, side: Side, index: usize) -> Vec<StreamId> {
        self.by_initial
            .values()
            .filter_map(|echo| match side {
                Side::Target => (echo.target == index).then_some(echo.reply),
                Side::Source => (echo.source == index).then_some(echo.initial),
            })
            .collect()
    }

    fn on_neighbour_reset(&mut self, side: Side, index: usize, stream: StreamId) {
        reset_as_frame(self, side, index, stream);
    }
}

impl Agent for EchoNukleus {
    fn name(&self) -> &str {
        "echo"
    }

    fn do_work(&mut self, _now: Instant) -> usize {
        let mut work = self.plumbing.poll_commands(&mut self.commands);
        for pending in std::mem::take(&mut self.commands) {
            // Echo takes no bindings: ws binds a path to it.
            self.plumbing.respond(Response::error(pending.correlation));
        }
        work += end_removed(self);
        work += drain(self);
        self.plumbing.notify_peers();
        work
    }

    fn on_idle(&mut self) {
        self.plumbing.release_idle_rings();
    }

    fn on_close(&mut self) {
        self.plumbing.remove_files();
    }
}
