//! permessage-deflate negotiation (RFC 7692 section 7.1).
//!
//! Decisions, all allowed by the RFC:
//! - The first valid `permessage-deflate` offer is accepted; offers with an
//!   unknown, repeated or out-of-range parameter are declined (skipped).
//! - `server_no_context_takeover` and `client_no_context_takeover` are echoed
//!   when offered (echoing the latter lets the server drop its inflater's
//!   window between messages) and never added unasked.
//! - `server_max_window_bits=N` is echoed as offered. The deflater then uses a
//!   window of N bits, except N = 8: zlib cannot produce raw deflate with a
//!   256-byte window (it silently uses 512), so for N = 8 the server sends
//!   every message uncompressed, which is always allowed (RSV1 is per message).
//! - `client_max_window_bits` is never answered: the client may then use any
//!   window up to the one it offered, and the inflater always uses 15 bits,
//!   which decodes every smaller window. (Answering 8 would also break zlib
//!   clients, for the reason above.)

/// One `permessage-deflate` offer from a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeflateOffer {
    /// The client asks the server not to reuse its LZ77 window.
    pub server_no_context_takeover: bool,
    /// The client says it will not reuse its LZ77 window.
    pub client_no_context_takeover: bool,
    /// The largest window (log2) the client can inflate.
    pub server_max_window_bits: Option<u8>,
    /// `None`: absent; `Some(None)`: present without value (the client
    /// accepts a limit); `Some(Some(n))`: the client will use at most `n`.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// The negotiated permessage-deflate parameters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its deflater after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its deflater after every message, so the server may
    /// reset its inflater too.
    pub client_no_context_takeover: bool,
    /// Limit on the server's window, echoed from the offer.
    pub server_max_window_bits: Option<u8>,
    /// Limit on the client's window (never set by [`negotiate_deflate`]).
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// The value of the `Sec-WebSocket-Extensions` response header.
    pub fn response_value(&self) -> String {
        let mut v = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            v.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if let Some(bits) = self.client_max_window_bits {
            v.push_str(&format!("; client_max_window_bits={bits}"));
        }
        v
    }

    /// Window bits of the server's deflater, or `None` when the server must
    /// not compress at all (a limit of 8 bits, see the module doc).
    pub fn deflate_window_bits(&self) -> Option<u8> {
        match self.server_max_window_bits {
            None => Some(15),
            Some(bits @ 9..=15) => Some(bits),
            Some(_) => None,
        }
    }
}

/// Chooses the parameters for the first acceptable offer, if any.
pub fn negotiate_deflate(offers: &[DeflateOffer]) -> Option<DeflateParams> {
    let offer = offers.first()?;
    Some(DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover,
        server_max_window_bits: offer.server_max_window_bits,
        client_max_window_bits: None,
    })
}

/// Appends the valid `permessage-deflate` offers found in one
/// `Sec-WebSocket-Extensions` header value to `offers`. Other extensions are
/// ignored; a value that does not parse at all is ignored too.
pub fn parse_offers(value: &str, offers: &mut Vec<DeflateOffer>) {
    for extension in split_outside_quotes(value, ',') {
        let mut parts = split_outside_quotes(extension, ';');
        let name = parts.next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("permessage-deflate") {
            continue;
        }
        if let Some(offer) = parse_params(parts) {
            offers.push(offer);
        }
    }
}

fn parse_params<'a>(params: impl Iterator<Item = &'a str>) -> Option<DeflateOffer> {
    let mut offer = DeflateOffer::default();
    for param in params {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        match (key.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if offer.client_max_window_bits.is_none() => {
                let bits = match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                };
                offer.client_max_window_bits = Some(bits);
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// 8 to 15, decimal without leading zeros (RFC 7692 7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').filter(|inner| !inner.contains('"')),
        None => Some(v),
    }
}

/// Splits on `sep` except inside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    s.split(move |c: char| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        c == sep && !in_quotes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(value: &str) -> Vec<DeflateOffer> {
        let mut v = Vec::new();
        parse_offers(value, &mut v);
        v
    }

    #[test]
    fn parses_plain_and_parameterised_offers() {
        assert_eq!(offers("permessage-deflate"), vec![DeflateOffer::default()]);
        let got = offers(
            "permessage-deflate; client_no_context_takeover; client_max_window_bits, \
             x-webkit-deflate-frame, PerMessage-Deflate; server_max_window_bits=\"10\"; \
             server_no_context_takeover; client_max_window_bits=9",
        );
        assert_eq!(
            got,
            vec![
                DeflateOffer {
                    client_no_context_takeover: true,
                    client_max_window_bits: Some(None),
                    ..DeflateOffer::default()
                },
                DeflateOffer {
                    server_no_context_takeover: true,
                    server_max_window_bits: Some(10),
                    client_max_window_bits: Some(Some(9)),
                    ..DeflateOffer::default()
                },
            ]
        );
    }

    #[test]
    fn declines_invalid_offers() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "permessage-deflate; server_max_window_bits=\"10",
        ] {
            assert_eq!(offers(bad), vec![], "{bad}");
        }
        // A declined offer does not hide the next one.
        assert_eq!(
            offers("permessage-deflate; foo, permessage-deflate").len(),
            1
        );
    }

    #[test]
    fn negotiation_echoes_the_first_offer() {
        assert_eq!(negotiate_deflate(&[]), None);
        let o = offers(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=12, permessage-deflate",
        );
        let p = negotiate_deflate(&o).unwrap();
        assert_eq!(
            p.response_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8"
        );
        assert_eq!(p.deflate_window_bits(), None);
        let p = negotiate_deflate(&offers("permessage-deflate; client_max_window_bits")).unwrap();
        assert_eq!(p.response_value(), "permessage-deflate");
        assert_eq!(p.deflate_window_bits(), Some(15));
        let p = negotiate_deflate(&offers("permessage-deflate;server_max_window_bits=9")).unwrap();
        assert_eq!(p.deflate_window_bits(), Some(9));
    }
}
