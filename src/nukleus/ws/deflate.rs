//! The inflater and deflater of one permessage-deflate connection (RFC 7692
//! section 7.2): raw deflate, each message ended by a sync flush whose
//! trailing `00 00 FF FF` is removed by the sender and re-added by the
//! receiver.
//!
//! Both are created lazily by the connection, so a connection that negotiated
//! the extension but is idle holds no zlib state.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

/// The bytes a sync flush ends with; stripped on the wire.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Window of the inflater: the largest, so it decodes whatever window the
/// client chose.
const INFLATE_WINDOW_BITS: u8 = 15;

/// zlib level of the deflater. Level 1 is the fast path of zlib-rs; a broker
/// compresses every outgoing message, so speed wins over the last percent.
const DEFLATE_LEVEL: u32 = 1;

/// Compressed data that zlib cannot decode, or a zlib failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeflateError {
    /// The client's compressed data is corrupt.
    #[error("invalid compressed data: {0}")]
    Corrupt(String),
    /// zlib made no progress with input and output space available.
    #[error("inflater stalled")]
    Stalled,
    /// Compressing failed.
    #[error("compression failed: {0}")]
    Compress(String),
}

/// Progress of one [`Inflater::inflate`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    /// Input bytes used.
    pub consumed: usize,
    /// Output bytes written.
    pub produced: usize,
    /// The client ended the deflate stream (BFINAL); the rest of the message
    /// must be ignored and the inflater reset afterwards.
    pub stream_end: bool,
}

/// Inflates the messages a client sends.
pub struct Inflater {
    inner: Decompress,
    reset_each_message: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("reset_each_message", &self.reset_each_message)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A raw inflater; `no_context_takeover` when the client promised to
    /// reset its window after each message.
    pub fn new(no_context_takeover: bool) -> Self {
        Self {
            inner: Decompress::new_with_window_bits(false, INFLATE_WINDOW_BITS),
            reset_each_message: no_context_takeover,
        }
    }

    /// Inflates from `input` into `output` as far as both allow.
    pub fn inflate(&mut self, input: &[u8], output: &mut [u8]) -> Result<Inflated, DeflateError> {
        let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
        let status = self
            .inner
            .decompress(input, output, FlushDecompress::None)
            .map_err(|e| DeflateError::Corrupt(e.to_string()))?;
        let consumed = (self.inner.total_in() - in0) as usize;
        let produced = (self.inner.total_out() - out0) as usize;
        let stream_end = status == Status::StreamEnd;
        if consumed == 0 && produced == 0 && !input.is_empty() && !output.is_empty() && !stream_end
        {
            return Err(DeflateError::Stalled);
        }
        Ok(Inflated {
            consumed,
            produced,
            stream_end,
        })
    }

    /// Called after the last byte of a message: resets the window when the
    /// client does not take it over, or when it ended its stream.
    pub fn end_message(&mut self, stream_ended: bool) {
        if self.reset_each_message || stream_ended {
            self.inner.reset(false);
        }
    }

    /// Whether the window is dropped between messages (so the whole inflater
    /// may be dropped while idle).
    pub fn resets_each_message(&self) -> bool {
        self.reset_each_message
    }
}

/// Compresses the messages the server sends.
pub struct Deflater {
    inner: Compress,
    reset_each_message: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("reset_each_message", &self.reset_each_message)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A raw deflater with a window of `window_bits` (9 to 15, clamped).
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            inner: Compress::new_with_window_bits(
                Compression::new(DEFLATE_LEVEL),
                false,
                window_bits.clamp(9, 15),
            ),
            reset_each_message: no_context_takeover,
        }
    }

    /// Appends `input` compressed and sync-flushed to `out`. When `last`
    /// (the final frame of a message) the trailing [`TAIL`] is removed.
    pub fn compress(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), DeflateError> {
        let start = out.len();
        let mut used = 0usize;
        out.reserve(input.len() / 2 + 64);
        loop {
            let before = self.inner.total_in();
            self.inner
                .compress_vec(&input[used..], out, FlushCompress::Sync)
                .map_err(|e| DeflateError::Compress(e.to_string()))?;
            used += (self.inner.total_in() - before) as usize;
            // The flush is complete once zlib stops with output space left.
            if used == input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.len().max(1024));
        }
        if last && out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        Ok(())
    }

    /// Called after the last frame of a message.
    pub fn end_message(&mut self) {
        if self.reset_each_message {
            self.inner.reset();
        }
    }

    /// Forgets the window: the next message does not refer to earlier ones.
    /// The server may do this at any time (used when a compressed message was
    /// thrown away for being larger than the original).
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate_all(inf: &mut Inflater, data: &[u8]) -> Vec<u8> {
        let mut input = data.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::new();
        let mut at = 0;
        let mut buf = [0u8; 100];
        loop {
            let r = inf.inflate(&input[at..], &mut buf).unwrap();
            at += r.consumed;
            out.extend_from_slice(&buf[..r.produced]);
            if at == input.len() && r.produced < buf.len() {
                break;
            }
        }
        inf.end_message(false);
        out
    }

    #[test]
    fn roundtrip_with_context_takeover_shrinks_repeats() {
        let mut def = Deflater::new(15, false);
        let mut inf = Inflater::new(false);
        let msg = b"{\"event\":\"broadcast\",\"channel\":\"news\",\"data\":{\"n\":1}}";
        let mut first = Vec::new();
        def.compress(msg, true, &mut first).unwrap();
        def.end_message();
        let mut second = Vec::new();
        def.compress(msg, true, &mut second).unwrap();
        def.end_message();
        assert!(
            second.len() < first.len() / 2,
            "{} vs {}",
            second.len(),
            first.len()
        );
        assert_eq!(inflate_all(&mut inf, &first), msg);
        assert_eq!(inflate_all(&mut inf, &second), msg);
    }

    #[test]
    fn no_context_takeover_messages_stand_alone() {
        let mut def = Deflater::new(9, true);
        let msg = vec![b'a'; 3000];
        let mut a = Vec::new();
        def.compress(&msg, true, &mut a).unwrap();
        def.end_message();
        let mut b = Vec::new();
        def.compress(&msg, true, &mut b).unwrap();
        assert_eq!(a, b);
        // A fresh inflater decodes the second message alone.
        assert_eq!(inflate_all(&mut Inflater::new(true), &b), msg);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut inf = Inflater::new(false);
        let mut out = [0u8; 64];
        assert!(matches!(
            inf.inflate(&[0xFF, 0xFF, 0xFF, 0xFF], &mut out),
            Err(DeflateError::Corrupt(_))
        ));
    }

    #[test]
    fn non_final_fragments_keep_the_tail() {
        let mut def = Deflater::new(15, false);
        let mut out = Vec::new();
        def.compress(b"hello", false, &mut out).unwrap();
        assert!(out.ends_with(&TAIL));
        def.compress(b" world", true, &mut out).unwrap();
        assert!(!out.ends_with(&TAIL));
        assert_eq!(inflate_all(&mut Inflater::new(false), &out), b"hello world");
    }
}
