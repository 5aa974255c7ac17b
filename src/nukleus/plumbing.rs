//! What every nukleus has in common: its control file, the streams files it
//! captured (reads) and routed to (writes), and the generic commands
//! CAPTURE, UNCAPTURE, ROUTE and UNROUTE.
//!
//! ```text
//! <run_dir>/<me>/control              commands in, responses out, counters
//! <run_dir>/<me>/streams/<source>     CAPTURE: created here, read by me
//! <run_dir>/<dest>/streams/<me>       ROUTE: mapped here, written by me
//! ```
//!
//! A streams file holds a forward ring (source -> reader) and a throttle ring
//! (reader -> source, for WINDOW and RESET), so one file serves both ways of
//! one pair of nuklei.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::command::{self, Command, Decoded, Response};
use super::runner::{Signal, Signals};
use crate::stream::{ControlFile, ControlLayout, CountersManager, Ring, StreamsFile};

/// A streams file this nukleus reads (it was CAPTUREd).
pub struct Source {
    /// The writing nukleus.
    pub name: String,
    /// The file: `forward` is read here, `throttle` written here. Shared so
    /// that a nukleus can read a ring while handling its frames with `&mut
    /// self`.
    pub file: Arc<StreamsFile>,
    /// Wakes the writer after we wrote to its throttle ring.
    pub signal: Option<Arc<Signal>>,
    /// Throttle frames were written and the writer not yet woken.
    pub dirty: bool,
}

/// A streams file this nukleus writes (it was ROUTEd).
pub struct Target {
    /// The reading nukleus.
    pub name: String,
    /// The file: `forward` is written here, `throttle` read here.
    pub file: Arc<StreamsFile>,
    /// Wakes the reader after we wrote to the forward ring.
    pub signal: Option<Arc<Signal>>,
    /// Frames were written and the reader not yet woken.
    pub dirty: bool,
    /// A write was refused (ring full) since the flag was last cleared.
    pub refused: bool,
}

impl Source {
    /// Writes a frame to the writer on the throttle ring.
    pub fn throttle(&mut self, type_id: i32, parts: &[&[u8]]) -> bool {
        self.dirty = true;
        self.file.throttle.write(type_id, parts).is_ok()
    }
}

impl Target {
    /// Writes a frame to the reader on the forward ring; false when full.
    pub fn write(&mut self, type_id: i32, parts: &[&[u8]]) -> bool {
        let ok = self.file.forward.write(type_id, parts).is_ok();
        self.dirty |= ok;
        self.refused |= !ok;
        ok
    }

    /// The forward ring, for claims.
    pub fn ring(&self) -> &Ring {
        &self.file.forward
    }
}

/// A nukleus's files.
pub struct Plumbing {
    name: String,
    dir: PathBuf,
    run_dir: PathBuf,
    capacity: usize,
    commands: Ring,
    responses: crate::stream::BroadcastTransmitter,
    /// The counters region of the control file.
    pub counters: CountersManager,
    /// Captured streams files, read here.
    pub sources: Vec<Source>,
    /// Routed streams files, written here.
    pub targets: Vec<Target>,
    signals: Arc<Signals>,
    pending: Vec<(i32, Vec<u8>)>,
    /// Neighbours removed by UNROUTE / UNCAPTURE whose live streams the
    /// nukleus has yet to end ([`end_removed`]).
    removed: Vec<Removed>,
}

/// Which way a removed neighbour was connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A routed target (UNROUTE): we wrote its forward ring.
    Target,
    /// A captured source (UNCAPTURE): we read its forward ring.
    Source,
}

/// A neighbour just removed, with the file it was reached by: the place
/// in `targets` / `sources` already holds a detached file, but the
/// neighbour still maps this one, so RESETs written here reach it.
pub struct Removed {
    /// Which list it was in.
    pub side: Side,
    /// Its index there.
    pub index: usize,
    file: Arc<StreamsFile>,
    signal: Option<Arc<Signal>>,
}

impl Removed {
    /// Tells the neighbour `stream` is dead: RESET on the ring it reads
    /// (our forward ring for a target, the throttle ring for a source).
    pub fn reset(&self, stream: super::frame::StreamId) {
        let ring = match self.side {
            Side::Target => &self.file.forward,
            Side::Source => &self.file.throttle,
        };
        // A full ring: the neighbour is gone from here either way.
        let _ = ring.write(super::frame::RESET, &[&stream.bytes()]);
    }
}

impl Drop for Removed {
    fn drop(&mut self) {
        if let Some(signal) = &self.signal {
            signal.notify();
        }
    }
}

/// A nukleus-specific command the generic part does not handle.
#[derive(Debug)]
pub struct Pending {
    /// Correlation id to answer.
    pub correlation: i64,
    /// Command type.
    pub type_id: i32,
    /// The command's fields after the correlation id.
    pub args: Vec<u8>,
}

impl Plumbing {
    /// Creates `<run_dir>/<name>/control` and an empty `streams/` directory.
    pub fn create(
        run_dir: &Path,
        name: &str,
        capacity: usize,
        signals: Arc<Signals>,
    ) -> std::io::Result<Self> {
        let dir = run_dir.join(name);
        std::fs::create_dir_all(dir.join("streams"))?;
        let control = ControlFile::create(&dir.join("control"), ControlLayout::default())?;
        Ok(Plumbing {
            name: name.to_string(),
            dir,
            run_dir: run_dir.to_path_buf(),
            capacity,
            commands: control.commands,
            responses: control.responses,
            counters: control.counters,
            sources: Vec::new(),
            targets: Vec::new(),
            signals,
            pending: Vec::new(),
            removed: Vec::new(),
        })
    }

    /// This nukleus's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Executes waiting generic commands and returns the nukleus-specific
    /// ones (BIND, UNBIND, PREPARE, UNPREPARE) for the caller.
    pub fn poll_commands(&mut self, out: &mut Vec<Pending>) -> usize {
        let pending = &mut self.pending;
        let n = self.commands.read(16, |type_id, body| {
            pending.push((type_id, body.to_vec()));
        });
        if n == 0 {
            return 0;
        }
        for (type_id, body) in std::mem::take(&mut self.pending) {
            let (correlation, command) = match command::decode(type_id, &body) {
                Decoded::Ignored => continue,
                Decoded::Unknown { correlation } => {
                    tracing::warn!(nukleus = %self.name, type_id, "unknown command type");
                    self.respond(Response::error(correlation));
                    continue;
                }
                Decoded::Malformed { correlation, error } => {
                    tracing::warn!(nukleus = %self.name, %error, "malformed command");
                    self.respond(Response::error(correlation));
                    continue;
                }
                Decoded::Command {
                    correlation,
                    command,
                } => (correlation, command),
            };
            let result = match command {
                Command::Capture(source) => self.capture(source),
                Command::Uncapture(source) => self.uncapture(source),
                Command::Route(target) => self.route(target),
                Command::Unroute(target) => self.unroute(target),
                _ => {
                    out.push(Pending {
                        correlation,
                        type_id,
                        // The correlation id was decoded, so 8 bytes exist.
                        args: body.get(8..).unwrap_or_default().to_vec(),
                    });
                    continue;
                }
            };
            let response = match result {
                Ok(()) => Response::ok(type_id, correlation),
                Err(error) => {
                    tracing::warn!(nukleus = %self.name, %error, "command failed");
                    Response::error(correlation)
                }
            };
            self.respond(response);
        }
        n
    }

    /// Publishes a response on the control file.
    pub fn respond(&mut self, response: Response) {
        if let Err(error) = self
            .responses
            .transmit(response.type_id(), &response.encode())
        {
            tracing::warn!(nukleus = %self.name, %error, "response not sent");
        }
    }

    fn valid_peer(name: &str) -> std::io::Result<()> {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid nukleus name {name:?}"),
            ))
        }
    }

    fn capture(&mut self, source: &str) -> std::io::Result<()> {
        Self::valid_peer(source)?;
        if self.sources.iter().any(|s| s.name == source) {
            return Ok(());
        }
        let file = Arc::new(StreamsFile::create(
            &self.dir.join("streams").join(source),
            self.capacity,
        )?);
        let entry = Source {
            name: source.to_string(),
            file,
            signal: self.signals.get(source),
            dirty: false,
        };
        // Never in a removed source's place: a stream still holding that
        // index would read the new source's frames as its own.
        self.sources.push(entry);
        Ok(())
    }

    /// Removes a source. Its place stays, held by a detached file (reads
    /// nothing), so that the index every live stream of the others holds
    /// still names its own source. Streams of the removed source are
    /// ended by the nukleus next ([`end_removed`]).
    fn uncapture(&mut self, source: &str) -> std::io::Result<()> {
        let at = self
            .sources
            .iter()
            .position(|s| s.name == source)
            .ok_or_else(|| not_found(source))?;
        let old = std::mem::replace(
            &mut self.sources[at],
            Source {
                name: String::new(),
                file: Arc::new(StreamsFile::detached()?),
                signal: None,
                dirty: false,
            },
        );
        self.removed.push(Removed {
            side: Side::Source,
            index: at,
            file: old.file,
            signal: old.signal,
        });
        let _ = std::fs::remove_file(self.dir.join("streams").join(source));
        Ok(())
    }

    fn route(&mut self, target: &str) -> std::io::Result<()> {
        Self::valid_peer(target)?;
        if self.targets.iter().any(|t| t.name == target) {
            return Ok(());
        }
        let path = self.run_dir.join(target).join("streams").join(&self.name);
        let file = Arc::new(StreamsFile::open(&path)?);
        let entry = Target {
            name: target.to_string(),
            file,
            signal: self.signals.get(target),
            dirty: false,
            refused: false,
        };
        // Never in a removed target's place (see `capture`).
        self.targets.push(entry);
        Ok(())
    }

    /// Removes a target. Its place stays, held by a detached file (what
    /// is written there goes nowhere), so that the index every live stream
    /// to the others holds still names its own target. Streams to the
    /// removed target are ended by the nukleus next ([`end_removed`]).
    fn unroute(&mut self, target: &str) -> std::io::Result<()> {
        let at = self
            .targets
            .iter()
            .position(|t| t.name == target)
            .ok_or_else(|| not_found(target))?;
        let old = std::mem::replace(
            &mut self.targets[at],
            Target {
                name: String::new(),
                file: Arc::new(StreamsFile::detached()?),
                signal: None,
                dirty: false,
                refused: false,
            },
        );
        self.removed.push(Removed {
            side: Side::Target,
            index: at,
            file: old.file,
            signal: old.signal,
        });
        Ok(())
    }

    /// The index of the target named `name`.
    pub fn target_index(&self, name: &str) -> Option<usize> {
        self.targets.iter().position(|t| t.name == name)
    }

    /// The index of the source named `name`.
    pub fn source_index(&self, name: &str) -> Option<usize> {
        self.sources.iter().position(|s| s.name == name)
    }

    /// Wakes every peer we wrote frames for since the last call.
    pub fn notify_peers(&mut self) {
        for target in self.targets.iter_mut().filter(|t| t.dirty) {
            target.dirty = false;
            if let Some(signal) = &target.signal {
                signal.notify();
            }
        }
        for source in self.sources.iter_mut().filter(|s| s.dirty) {
            source.dirty = false;
            if let Some(signal) = &source.signal {
                signal.notify();
            }
        }
    }

    /// Gives back the memory under the free space of every ring this
    /// nukleus writes (its targets' forward rings, its sources' throttle
    /// rings): called when the nukleus has been idle for a while, so that
    /// pages a burst touched are not held by quiet rings.
    pub fn release_idle_rings(&self) -> usize {
        let forward = self.targets.iter().map(|t| &t.file.forward);
        let throttle = self.sources.iter().map(|s| &s.file.throttle);
        forward.chain(throttle).map(Ring::release_free_space).sum()
    }

    /// Removes this nukleus's directory (at shutdown).
    pub fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A nukleus whose streams can be ended when a neighbour is removed.
pub trait Neighbours {
    /// Its files.
    fn plumbing_mut(&mut self) -> &mut Plumbing;
    /// The live streams going through the removed neighbour: those written
    /// to target `index` or read from source `index`.
    fn streams_via(&self, side: Side, index: usize) -> Vec<super::frame::StreamId>;
    /// `stream` was reset by the removed neighbour: end what it carried
    /// (close the connection or session) as for a RESET it sent.
    fn on_neighbour_reset(&mut self, side: Side, index: usize, stream: super::frame::StreamId);
}

/// Ends the live streams of the neighbours removed since the last call:
/// each gets a RESET towards the neighbour (which still maps the file) and
/// is ended here as if the neighbour had reset it, so the connection it
/// belongs to closes now rather than by the idle timeout. Returns how
/// many streams were ended.
pub fn end_removed(nukleus: &mut impl Neighbours) -> usize {
    let removed = std::mem::take(&mut nukleus.plumbing_mut().removed);
    let mut ended = 0;
    for gone in removed {
        let streams = nukleus.streams_via(gone.side, gone.index);
        for &stream in &streams {
            gone.reset(stream);
        }
        for &stream in &streams {
            nukleus.on_neighbour_reset(gone.side, gone.index, stream);
        }
        if !streams.is_empty() {
            tracing::info!(
                nukleus = %nukleus.plumbing_mut().name,
                side = ?gone.side,
                streams = streams.len(),
                "streams of a removed neighbour reset"
            );
        }
        ended += streams.len();
    }
    ended
}

fn not_found(name: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no stream file for {name:?}"),
    )
}

/// A nukleus whose frames [`drain`] hands over one at a time.
pub trait Frames {
    /// Its files.
    fn plumbing(&self) -> &Plumbing;
    /// A frame from the forward ring of captured source `source`.
    fn on_source_frame(&mut self, source: usize, frame: super::frame::Frame<'_>);
    /// A frame (WINDOW, RESET) from the throttle ring of routed target
    /// `target`.
    fn on_throttle_frame(&mut self, target: usize, frame: super::frame::Frame<'_>);
}

/// [`Neighbours::on_neighbour_reset`] for a nukleus that reads frames
/// through [`Frames`]: a RESET handed over as if read from the ring.
pub fn reset_as_frame(
    nukleus: &mut impl Frames,
    side: Side,
    index: usize,
    stream: super::frame::StreamId,
) {
    let frame = super::frame::Frame::Reset { stream };
    match side {
        Side::Target => nukleus.on_throttle_frame(index, frame),
        Side::Source => nukleus.on_source_frame(index, frame),
    }
}

/// Hands every waiting frame to `nukleus`, where it lies in the mapped file:
/// first the forward rings of its sources, then the throttle rings of its
/// targets, up to [`ROUND_FRAMES`](super::ROUND_FRAMES) from each. A frame
/// that does not decode is logged and skipped. Returns how many were read.
pub fn drain(nukleus: &mut impl Frames) -> usize {
    use super::frame::Frame;
    let mut work = 0;
    for source in 0..nukleus.plumbing().sources.len() {
        let file = Arc::clone(&nukleus.plumbing().sources[source].file);
        work += file.forward.read(super::ROUND_FRAMES, |type_id, body| {
            match Frame::decode(type_id, body) {
                Ok(frame) => nukleus.on_source_frame(source, frame),
                Err(error) => tracing::warn!(%error, "bad frame"),
            }
        });
    }
    for target in 0..nukleus.plumbing().targets.len() {
        let file = Arc::clone(&nukleus.plumbing().targets[target].file);
        work += file.throttle.read(super::ROUND_FRAMES, |type_id, body| {
            match Frame::decode(type_id, body) {
                Ok(frame) => nukleus.on_throttle_frame(target, frame),
                Err(error) => tracing::warn!(%error, "bad frame"),
            }
        });
    }
    work
}
