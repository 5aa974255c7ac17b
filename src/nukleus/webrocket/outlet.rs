//! The broker's way out: one reply stream per session into the ws nukleus,
//! spending the credit ws granted. No credit means the session is slow; the
//! broker decides what to do about that (it closes it).

use std::collections::VecDeque;

use crate::broker::{Outlet, SessionKey};
use crate::nukleus::frame::{self, MulticastBody, StreamId, Writer};
use crate::nukleus::plumbing::{Side, Target};
use crate::nukleus::IdMap;
use crate::protocol::CloseReason;

/// ws DATA flags of a whole text message.
const TEXT_FIN: u8 = 0x81;
/// The most streams one MULTICAST frame lists (32 KiB of ids); a larger
/// fan-out is written as several frames.
const MAX_MULTICAST: usize = 4096;

/// The sessions' streams by their initial stream id. Boxed: a table of
/// 16,384 sessions has 32,768 slots, all of them touched, so a slot holds a
/// pointer rather than a whole `Stream` (ARCHITECTURE.md, "Memory per
/// connection").
pub type Streams = IdMap<Box<Stream>>;

/// The streams of one session.
#[derive(Debug)]
pub struct Stream {
    /// Source index the session's initial stream comes from.
    pub source: usize,
    /// Target index our reply goes to.
    pub target: usize,
    /// Our reply stream.
    pub reply: StreamId,
    /// Credit ws gave for `reply`.
    pub credit: i64,
    /// Padding ws counts per DATA.
    pub padding: i64,
    /// Credit we gave ws for `initial` not yet used.
    pub granted: i64,
    /// Pieces of a message delivered in several DATA frames.
    pub partial: Vec<u8>,
    /// We ended the reply.
    pub ended: bool,
    /// `{"connected": ...}`, the session's first message: it waits for the
    /// first credit ws grants, and goes before anything else.
    pub greeting: Option<Vec<u8>>,
}

/// The streams of `streams` that run through the removed neighbour at
/// `index` on `side`, as that neighbour knows them (our reply stream for a
/// target, the session's initial stream for a source).
pub fn streams_via(streams: &Streams, side: Side, index: usize) -> Vec<StreamId> {
    streams
        .iter()
        .filter_map(|(&initial, stream)| match side {
            Side::Target => (stream.target == index).then_some(stream.reply),
            Side::Source => (stream.source == index).then_some(StreamId(initial)),
        })
        .collect()
}

/// The initial stream (the session's key) of a stream a removed
/// neighbour reset: reply ids are looked up in `by_reply`.
pub fn initial_of(by_reply: &IdMap<i64>, side: Side, stream: StreamId) -> Option<StreamId> {
    match side {
        Side::Target => by_reply.get(&stream.0).map(|&initial| StreamId(initial)),
        Side::Source => Some(stream),
    }
}

/// What a DATA frame from ws made of a session's input.
pub enum Piece<'a> {
    /// Part of a longer message: nothing to handle yet.
    Part,
    /// A whole message, as it lies in the ring.
    Whole(&'a [u8]),
    /// The last piece of a longer message, reassembled.
    Assembled(Vec<u8>),
}

impl Stream {
    /// A session's streams: input from `source`, replies to `target` on
    /// `reply`; ws was granted `window` of input credit.
    pub fn new(
        source: usize,
        target: usize,
        reply: StreamId,
        window: i64,
        greeting: Option<Vec<u8>>,
    ) -> Self {
        Stream {
            source,
            target,
            reply,
            credit: 0,
            padding: 0,
            granted: window,
            partial: Vec::new(),
            ended: false,
            greeting,
        }
    }

    /// Takes a DATA payload from ws (`u8` flags, then bytes; FIN on the
    /// last piece of a message) and spends its input credit.
    pub fn take<'a>(&mut self, payload: &'a [u8]) -> Piece<'a> {
        let Some((&flags, message)) = payload.split_first() else {
            return Piece::Part;
        };
        self.granted -= payload.len() as i64;
        let fin = flags & 0x80 != 0;
        if fin && self.partial.is_empty() {
            return Piece::Whole(message);
        }
        // A message larger than ws's piece size: reassemble it.
        self.partial.extend_from_slice(message);
        if fin {
            Piece::Assembled(std::mem::take(&mut self.partial))
        } else {
            Piece::Part
        }
    }

    /// The WINDOW body that gives ws back the input credit spent, once
    /// half of `window` is spent (the message was handled at once).
    pub fn renew(&mut self, initial: StreamId, window: i64) -> Option<[u8; 16]> {
        let give = window - self.granted;
        if give < window / 2 {
            return None;
        }
        self.granted += give;
        Some(frame::window_body(initial, give as i32, 0))
    }

    /// A WINDOW from ws for the reply stream.
    pub fn on_window(&mut self, credit: i32, padding: i32) {
        self.credit += i64::from(credit);
        self.padding = i64::from(padding.max(0));
    }

    /// Spends the credit of a text message of `len` bytes, after the
    /// greeting if that is still due; false when the session is ended or
    /// has no room (a slow consumer).
    fn spend(&mut self, targets: &mut [Target], overflow: &mut Overflow, len: usize) -> bool {
        let cost = len as i64 + 1 + self.padding;
        if !self.greet(targets, overflow) || self.ended || self.credit < cost {
            return false;
        }
        self.credit -= cost;
        true
    }

    /// Sends the greeting if it is still due and fits; false when it is
    /// due and does not fit yet.
    pub fn greet(&mut self, targets: &mut [Target], overflow: &mut Overflow) -> bool {
        let Some(greeting) = &self.greeting else {
            return true;
        };
        let cost = greeting.len() as i64 + 1 + self.padding;
        if self.ended || self.credit < cost {
            return self.ended;
        }
        self.credit -= cost;
        let parts: [&[u8]; 3] = [&self.reply.bytes(), &[TEXT_FIN], greeting];
        overflow.write(targets, self.target, frame::DATA, &parts);
        self.greeting = None;
        true
    }
}

/// Frames a full ring refused, sent first next round; and the list of a
/// MULTICAST being built.
#[derive(Debug, Default)]
pub struct Overflow {
    frames: VecDeque<(usize, i32, Vec<u8>)>,
    multicast: MulticastBody,
}

impl Overflow {
    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Writes what waited, in order, until a ring is full again.
    pub fn drain(&mut self, targets: &mut [Target]) -> usize {
        let mut n = 0;
        while let Some((target, type_id, body)) = self.frames.front() {
            if !targets[*target].write(*type_id, &[body]) {
                break;
            }
            self.frames.pop_front();
            n += 1;
        }
        n
    }

    fn write(&mut self, targets: &mut [Target], target: usize, type_id: i32, parts: &[&[u8]]) {
        if self.frames.is_empty() && targets[target].write(type_id, parts) {
            return;
        }
        self.frames.push_back((target, type_id, parts.concat()));
    }

    /// Writes the MULTICAST listed so far, of `payload`, to `target`.
    fn write_multicast(&mut self, targets: &mut [Target], target: usize, payload: &[u8]) {
        if self.multicast.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.multicast);
        self.write(
            targets,
            target,
            frame::MULTICAST,
            &[list.head(), &[TEXT_FIN], payload],
        );
        list.clear();
        self.multicast = list;
    }
}

/// [`Outlet`] over the sessions' reply streams.
pub struct StreamOutlet<'a> {
    /// Sessions by key.
    pub streams: &'a mut Streams,
    /// Routed streams files.
    pub targets: &'a mut [Target],
    /// What full rings refused.
    pub overflow: &'a mut Overflow,
}

impl StreamOutlet<'_> {
    /// Ends a session's reply with a close code and reason.
    pub fn end(&mut self, key: SessionKey, code: u16, reason: &str) {
        let Some(stream) = self.streams.get_mut(&(key.0 as i64)) else {
            return;
        };
        if stream.ended {
            return;
        }
        stream.ended = true;
        let mut body = stream.reply.bytes().to_vec();
        body.put_i16(code as i16);
        body.put_string(Some(reason));
        self.overflow
            .write(self.targets, stream.target, frame::END, &[&body]);
    }
}

impl Outlet for StreamOutlet<'_> {
    fn send(&mut self, key: SessionKey, payload: &[u8]) -> bool {
        let Some(stream) = self.streams.get_mut(&(key.0 as i64)) else {
            return false;
        };
        if !stream.spend(self.targets, self.overflow, payload.len()) {
            return false;
        }
        let parts: [&[u8]; 3] = [&stream.reply.bytes(), &[TEXT_FIN], payload];
        self.overflow
            .write(self.targets, stream.target, frame::DATA, &parts);
        true
    }

    /// One MULTICAST per target (per [`MAX_MULTICAST`] streams) for every
    /// session with credit.
    fn send_many(
        &mut self,
        keys: &[SessionKey],
        payload: &[u8],
        refused: &mut Vec<SessionKey>,
    ) -> usize {
        let most = |target: &Target| {
            let room = target.ring().max_body().saturating_sub(payload.len() + 64) / 8;
            room.min(MAX_MULTICAST)
        };
        if keys.len() < 2 || self.targets.iter().any(|t| most(t) < 2) {
            return crate::broker::send_each(self, keys, payload, refused);
        }
        self.overflow.multicast.clear();
        let mut current = None;
        let mut sent = 0;
        for &key in keys {
            let Some(stream) = self.streams.get_mut(&(key.0 as i64)) else {
                refused.push(key);
                continue;
            };
            if !stream.spend(self.targets, self.overflow, payload.len()) {
                refused.push(key);
                continue;
            }
            let target = stream.target;
            let full = self.overflow.multicast.len() >= most(&self.targets[target]);
            if let Some(previous) = current.filter(|&c| c != target || full) {
                self.overflow
                    .write_multicast(self.targets, previous, payload);
            }
            current = Some(target);
            self.overflow.multicast.push(stream.reply);
            sent += 1;
        }
        if let Some(target) = current {
            self.overflow.write_multicast(self.targets, target, payload);
        }
        sent
    }

    fn close(&mut self, key: SessionKey, reason: CloseReason) {
        self.end(key, reason.code(), reason.reason());
    }

    fn close_with(&mut self, key: SessionKey, code: u16, reason: &str) {
        self.end(key, code, reason);
    }
}
