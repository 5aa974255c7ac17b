//! Encoding of outgoing messages: unmasked frames, compressed per message
//! when permessage-deflate was negotiated.
//!
//! A whole message (one FIN frame) is compressed only when it is at least
//! [`MIN_COMPRESS_LEN`] bytes, and sent uncompressed when compressing did not
//! make it smaller; the deflater is then reset so its window never holds data
//! the client did not see. A fragmented message is compressed (or not) as a
//! whole, decided on its first fragment; non-final fragments keep the sync
//! flush tail so each one can be sent at once.

use super::deflate::Deflater;
use super::extension::DeflateParams;
use super::frame::{
    encode_frame, write_header, FIN, MAX_CONTROL_PAYLOAD, MAX_SERVER_HEADER_LEN, OP_CONTINUATION,
    RSV1,
};

/// Messages shorter than this are never compressed: deflate's block overhead
/// eats what it could save.
pub const MIN_COMPRESS_LEN: usize = 32;

/// Encoder state of one connection.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// Window of the deflater; `None` when messages are never compressed.
    window_bits: Option<u8>,
    no_context_takeover: bool,
    /// Boxed: an idle connection pays one pointer for it, not the state.
    deflater: Option<Box<Deflater>>,
    /// A fragmented message is open; whether it is compressed.
    fragmented: Option<bool>,
}

impl Outgoing {
    /// An encoder for the negotiated parameters.
    pub fn new(params: Option<&DeflateParams>) -> Self {
        Self {
            window_bits: params.and_then(DeflateParams::deflate_window_bits),
            no_context_takeover: params.is_some_and(|p| p.server_no_context_takeover),
            deflater: None,
            fragmented: None,
        }
    }

    /// Drops the deflater (forgetting its window is always allowed) unless a
    /// compressed fragmented message is open.
    pub fn release_memory(&mut self) {
        if self.fragmented != Some(true) {
            self.deflater = None;
        }
    }

    /// Appends the frame for `payload` to `out`; `flags` as in
    /// [`super::WsConnection::encode_message`].
    /// The header of a data frame that goes out uncompressed, when this
    /// connection compresses nothing: the caller can then send header and
    /// payload without copying the payload into a frame buffer. `None` means
    /// use [`Outgoing::encode`].
    pub fn plain_header(
        &self,
        flags: u8,
        len: usize,
        header: &mut [u8; MAX_SERVER_HEADER_LEN],
    ) -> Option<usize> {
        if self.window_bits.is_some() || flags & 0x08 != 0 {
            return None;
        }
        Some(write_header(header, flags & (FIN | 0x0F), len))
    }

    pub fn encode(&mut self, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
        let opcode = flags & 0x0F;
        let fin = flags & FIN != 0;
        if opcode & 0x08 != 0 {
            let len = payload.len().min(MAX_CONTROL_PAYLOAD);
            encode_frame(FIN | opcode, &payload[..len], out);
            return;
        }
        let first = opcode != OP_CONTINUATION;
        let compress = if first {
            self.window_bits.is_some() && payload.len() >= MIN_COMPRESS_LEN
        } else {
            self.fragmented.unwrap_or(false)
        };
        let plain = (flags & (FIN | 0x0F), payload);
        if !compress {
            encode_frame(plain.0, plain.1, out);
        } else {
            let rsv = if first { RSV1 } else { 0 };
            let start = out.len();
            match self.write_compressed(plain.0 | rsv, payload, fin, out) {
                Ok(body) if !(first && fin && body >= payload.len()) => {}
                result => {
                    if result.is_err() && !first {
                        tracing::warn!("deflate failed inside a fragmented message");
                    }
                    // Larger than the original, or failed: send it as is and
                    // forget what the deflater saw.
                    out.truncate(start);
                    if let Some(d) = self.deflater.as_mut() {
                        d.reset();
                    }
                    encode_frame(plain.0, plain.1, out);
                    if first {
                        self.fragmented = (!fin).then_some(false);
                        return;
                    }
                }
            }
        }
        if fin {
            if self.fragmented == Some(true) || (first && compress) {
                if let Some(d) = self.deflater.as_mut() {
                    d.end_message();
                }
            }
            self.fragmented = None;
        } else if first {
            self.fragmented = Some(compress);
        }
    }

    /// Writes one compressed frame; returns the compressed payload length.
    fn write_compressed(
        &mut self,
        first: u8,
        payload: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, ()> {
        let (bits, nct) = (self.window_bits.unwrap_or(15), self.no_context_takeover);
        let deflater = self
            .deflater
            .get_or_insert_with(|| Box::new(Deflater::new(bits, nct)));
        let start = out.len();
        let body_start = start + MAX_SERVER_HEADER_LEN;
        out.resize(body_start, 0);
        if deflater.compress(payload, last, out).is_err() {
            out.truncate(start);
            return Err(());
        }
        let body = out.len() - body_start;
        let mut hdr = [0u8; MAX_SERVER_HEADER_LEN];
        let h = write_header(&mut hdr, first, body);
        // The header goes right before the body; close the gap in front.
        let hstart = body_start - h;
        out[hstart..body_start].copy_from_slice(&hdr[..h]);
        if hstart > start {
            out.copy_within(hstart.., start);
            out.truncate(out.len() - (hstart - start));
        }
        Ok(body)
    }
}
