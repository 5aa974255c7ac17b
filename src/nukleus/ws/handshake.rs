//! The HTTP/1.1 upgrade handshake (RFC 6455 section 4.2).
//!
//! A request without `Upgrade: websocket` is plain HTTP: GET and HEAD are
//! [`HandshakeOutcome::Http`] (answered by [`super::http`]), other methods
//! 405.
//!
//! Rejections, each a complete `Connection: close` response:
//! - 400: unparsable request, not HTTP/1.1, missing `Host`, `Connection`
//!   without `upgrade`, missing or malformed `Sec-WebSocket-Key`, a body, a
//!   target that is not an absolute path;
//! - 405: an upgrade with a method other than GET (with `Allow: GET`), or a
//!   plain request other than GET or HEAD (with `Allow: GET, HEAD`);
//! - 426: a `Sec-WebSocket-Version` other than 13 (with
//!   `Sec-WebSocket-Version: 13`); the nukleus also answers 426 to a plain
//!   request for a WebSocket path;
//! - 431: a request head larger than `max_handshake_size` or with more than
//!   [`MAX_HEADERS`] headers.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

pub use super::extension::negotiate_deflate;
use super::extension::{parse_offers, DeflateOffer, DeflateParams};
use super::WsSettings;

/// Most headers an upgrade request may carry.
pub const MAX_HEADERS: usize = 64;

/// The GUID RFC 6455 appends to the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The HTTP statuses the WebSocket port answers with.
pub mod status {
    /// Malformed request.
    pub const BAD_REQUEST: u16 = 400;
    /// Origin not allowed.
    pub const FORBIDDEN: u16 = 403;
    /// No vhost, resource or file at that path.
    pub const NOT_FOUND: u16 = 404;
    /// Not GET (upgrade) or GET/HEAD (files).
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    /// The request head did not arrive in time.
    pub const REQUEST_TIMEOUT: u16 = 408;
    /// A request target over the limit.
    pub const URI_TOO_LONG: u16 = 414;
    /// A plain GET on a WebSocket path, or an unsupported version.
    pub const UPGRADE_REQUIRED: u16 = 426;
    /// A request head over `limits.max_handshake_size`.
    pub const HEADERS_TOO_LARGE: u16 = 431;
    /// Too many connections, or the node is draining.
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

/// Result of [`parse_upgrade`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// The request head is not complete yet.
    Incomplete,
    /// A valid upgrade request; its head used `consumed` bytes (what follows
    /// is already WebSocket data).
    Request {
        /// The parsed request.
        request: UpgradeRequest,
        /// Length of the request head.
        consumed: usize,
    },
    /// A plain HTTP GET or HEAD (no upgrade asked).
    Http(super::http::HttpRequest),
    /// Answer `response` and close the connection.
    Reject {
        /// HTTP status.
        status: u16,
        /// The complete HTTP response.
        response: Vec<u8>,
    },
}

/// A valid WebSocket upgrade request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The path of the request target, without the query.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// `Host` header.
    pub host: String,
    /// `Sec-WebSocket-Key` (validated: base64 of 16 bytes).
    pub key: String,
    /// Requested sub-protocols in the client's order of preference.
    pub protocols: Vec<String>,
    /// Valid permessage-deflate offers in the client's order (empty when
    /// [`WsSettings::deflate`] is off).
    pub deflate_offers: Vec<DeflateOffer>,
    /// `Origin` header, if any.
    pub origin: Option<String>,
}

/// Parses an upgrade request from the start of `buf`.
pub fn parse_upgrade(buf: &[u8], settings: &WsSettings) -> HandshakeOutcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= settings.max_handshake_size => n,
        Ok(httparse::Status::Partial) if buf.len() <= settings.max_handshake_size => {
            return HandshakeOutcome::Incomplete;
        }
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return reject(status::HEADERS_TOO_LARGE, "request header fields too large");
        }
        Err(_) => return reject(status::BAD_REQUEST, "malformed HTTP request"),
    };
    match validate(&req, settings) {
        Ok(Parsed::Upgrade(request)) => HandshakeOutcome::Request { request, consumed },
        Ok(Parsed::Http(request)) => HandshakeOutcome::Http(request),
        Err((status, reason)) => reject(status, reason),
    }
}

fn reject(status: u16, reason: &str) -> HandshakeOutcome {
    HandshakeOutcome::Reject {
        status,
        response: error_response(status, reason),
    }
}

type Rejection = (u16, &'static str);

enum Parsed {
    Upgrade(UpgradeRequest),
    Http(super::http::HttpRequest),
}

fn validate(req: &httparse::Request<'_, '_>, settings: &WsSettings) -> Result<Parsed, Rejection> {
    let target = req.path.unwrap_or("");
    if !target.starts_with('/') {
        return Err((
            status::BAD_REQUEST,
            "request target must be an absolute path",
        ));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut out = UpgradeRequest {
        path,
        query,
        ..UpgradeRequest::default()
    };
    let mut h = Headers::default();
    for header in req.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| (status::BAD_REQUEST, "header value is not UTF-8"))?
            .trim();
        h.add(header.name, value, &mut out, settings)?;
    }
    if !h.upgrade_websocket {
        return plain(req.method, out.path, h);
    }
    if req.method != Some("GET") {
        return Err((
            status::METHOD_NOT_ALLOWED,
            "only GET can upgrade to WebSocket",
        ));
    }
    if req.version != Some(1) {
        return Err((status::BAD_REQUEST, "WebSocket needs HTTP/1.1"));
    }
    if !h.connection_upgrade {
        return Err((
            status::BAD_REQUEST,
            "Connection header must contain Upgrade",
        ));
    }
    match h.version.as_deref() {
        Some("13") => {}
        _ => {
            return Err((
                status::UPGRADE_REQUIRED,
                "unsupported Sec-WebSocket-Version",
            ))
        }
    }
    out.host = h.host.ok_or((status::BAD_REQUEST, "missing Host header"))?;
    out.key = h
        .key
        .ok_or((status::BAD_REQUEST, "missing Sec-WebSocket-Key"))?;
    if !matches!(BASE64.decode(&out.key), Ok(k) if k.len() == 16) {
        return Err((status::BAD_REQUEST, "invalid Sec-WebSocket-Key"));
    }
    if h.has_body {
        return Err((status::BAD_REQUEST, "upgrade request must not have a body"));
    }
    Ok(Parsed::Upgrade(out))
}

/// A request that asks for no upgrade: GET or HEAD without a body.
fn plain(method: Option<&str>, path: String, h: Headers) -> Result<Parsed, Rejection> {
    let head = match method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => {
            return Err((
                status::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served here",
            ))
        }
    };
    if h.has_body {
        return Err((status::BAD_REQUEST, "request must not have a body"));
    }
    Ok(Parsed::Http(super::http::HttpRequest {
        head,
        path,
        if_none_match: h.if_none_match,
    }))
}

/// Headers that must appear once, and flags gathered while scanning.
#[derive(Default)]
struct Headers {
    host: Option<String>,
    key: Option<String>,
    version: Option<String>,
    upgrade_websocket: bool,
    connection_upgrade: bool,
    has_body: bool,
    if_none_match: Option<String>,
}

impl Headers {
    fn add(
        &mut self,
        name: &str,
        value: &str,
        out: &mut UpgradeRequest,
        settings: &WsSettings,
    ) -> Result<(), Rejection> {
        let once = |slot: &mut Option<String>, what| match slot {
            Some(_) => Err((status::BAD_REQUEST, what)),
            None => {
                *slot = Some(value.to_owned());
                Ok(())
            }
        };
        match name.to_ascii_lowercase().as_str() {
            "host" => once(&mut self.host, "duplicate Host header")?,
            "sec-websocket-key" => once(&mut self.key, "duplicate Sec-WebSocket-Key")?,
            "sec-websocket-version" => once(&mut self.version, "duplicate Sec-WebSocket-Version")?,
            "upgrade" => self.upgrade_websocket |= has_token(value, "websocket"),
            "connection" => self.connection_upgrade |= has_token(value, "upgrade"),
            "sec-websocket-protocol" => out.protocols.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            ),
            "sec-websocket-extensions" if settings.deflate => {
                parse_offers(value, &mut out.deflate_offers);
            }
            "origin" => once(&mut out.origin, "duplicate Origin header")?,
            "if-none-match" => self.if_none_match = Some(value.to_owned()),
            "content-length" => self.has_body |= value != "0",
            "transfer-encoding" => self.has_body = true,
            _ => {}
        }
        Ok(())
    }
}

fn has_token(list: &str, token: &str) -> bool {
    list.split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Sec-WebSocket-Accept` for a client key: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The `101 Switching Protocols` response accepting `req`, with the chosen
/// sub-protocol and negotiated extension, if any.
pub fn accept_response(
    req: &UpgradeRequest,
    protocol: Option<&str>,
    deflate: Option<&DeflateParams>,
) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(&req.key)
    );
    if let Some(p) = protocol {
        r.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    if let Some(d) = deflate {
        r.push_str(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            d.response_value()
        ));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A complete HTTP/1.1 error response with `reason` as a short text body.
pub fn error_response(status: u16, reason: &str) -> Vec<u8> {
    let extra = match status {
        status::METHOD_NOT_ALLOWED => "Allow: GET, HEAD\r\n",
        status::UPGRADE_REQUIRED => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    let body = format!("{reason}\n");
    format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n{extra}\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        status_text(status),
        body.len()
    )
    .into_bytes()
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        status::METHOD_NOT_ALLOWED => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        status::UPGRADE_REQUIRED => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut r = lines.join("\r\n");
        r.push_str("\r\n\r\n");
        r.into_bytes()
    }

    fn valid_lines() -> Vec<&'static str> {
        vec![
            "GET /chat/room?token=abc HTTP/1.1",
            "Host: example.com",
            "Upgrade: WebSocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Origin: http://example.com",
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Protocol: webrocket-v2",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        ]
    }

    fn status_of(lines: &[&str]) -> u16 {
        match parse_upgrade(&request(lines), &WsSettings::default()) {
            HandshakeOutcome::Reject { status, response } => {
                let text = String::from_utf8(response).unwrap();
                assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
                status
            }
            other => panic!("not rejected: {other:?}"),
        }
    }

    fn without(prefix: &str) -> Vec<&'static str> {
        valid_lines()
            .into_iter()
            .filter(|l| !l.starts_with(prefix))
            .collect()
    }

    fn with(prefix: &str, line: &'static str) -> Vec<&'static str> {
        let mut v = without(prefix);
        v.push(line);
        v
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn parses_a_valid_request() {
        let mut bytes = request(&valid_lines());
        let head = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let HandshakeOutcome::Request { request, consumed } =
            parse_upgrade(&bytes, &WsSettings::default())
        else {
            panic!("not accepted");
        };
        assert_eq!(consumed, head);
        assert_eq!(request.path, "/chat/room");
        assert_eq!(request.query.as_deref(), Some("token=abc"));
        assert_eq!(request.host, "example.com");
        assert_eq!(request.key, KEY);
        assert_eq!(request.protocols, ["chat", "superchat", "webrocket-v2"]);
        assert_eq!(request.origin.as_deref(), Some("http://example.com"));
        assert_eq!(request.deflate_offers.len(), 1);
    }

    #[test]
    fn deflate_offers_are_ignored_when_disabled() {
        let settings = WsSettings {
            deflate: false,
            ..WsSettings::default()
        };
        let HandshakeOutcome::Request { request, .. } =
            parse_upgrade(&request(&valid_lines()), &settings)
        else {
            panic!("not accepted");
        };
        assert!(request.deflate_offers.is_empty());
    }

    #[test]
    fn partial_requests_are_incomplete_until_too_large() {
        let full = request(&valid_lines());
        for cut in [0, 1, 10, full.len() - 1] {
            assert_eq!(
                parse_upgrade(&full[..cut], &WsSettings::default()),
                HandshakeOutcome::Incomplete
            );
        }
        let small = WsSettings {
            max_handshake_size: 64,
            ..WsSettings::default()
        };
        assert!(matches!(
            parse_upgrade(&full[..100], &small),
            HandshakeOutcome::Reject { status: 431, .. }
        ));
        assert!(matches!(
            parse_upgrade(&full, &small),
            HandshakeOutcome::Reject { status: 431, .. }
        ));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut lines = valid_lines();
        lines.extend(vec!["X-Filler: 1"; MAX_HEADERS]);
        assert_eq!(status_of(&lines), 431);
    }

    #[test]
    fn each_rejection_has_its_status() {
        let mut post = valid_lines();
        post[0] = "POST /chat HTTP/1.1";
        assert_eq!(status_of(&post), 405);
        let mut old = valid_lines();
        old[0] = "GET /chat HTTP/1.0";
        assert_eq!(status_of(&old), 400);
        let mut absolute = valid_lines();
        absolute[0] = "GET http://example.com/chat HTTP/1.1";
        assert_eq!(status_of(&absolute), 400);
        assert_eq!(
            status_of(&with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")),
            426
        );
        assert_eq!(status_of(&without("Sec-WebSocket-Version")), 426);
        assert_eq!(status_of(&without("Host")), 400);
        assert_eq!(
            status_of(&with("Connection", "Connection: keep-alive")),
            400
        );
        assert_eq!(status_of(&without("Sec-WebSocket-Key")), 400);
        assert_eq!(
            status_of(&with("Sec-WebSocket-Key", "Sec-WebSocket-Key: c2hvcnQ=")),
            400
        );
        assert_eq!(
            status_of(&with("Sec-WebSocket-Key", "Sec-WebSocket-Key: !!!")),
            400
        );
        let mut dup = valid_lines();
        dup.push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(status_of(&dup), 400);
        let mut body = valid_lines();
        body.push("Content-Length: 5");
        assert_eq!(status_of(&body), 400);
        match parse_upgrade(b"\x16\x03\x01 garbage\r\n\r\n", &WsSettings::default()) {
            HandshakeOutcome::Reject { status, .. } => assert_eq!(status, 400),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_without_upgrade_are_plain_http() {
        let plain = |lines: &[&str]| parse_upgrade(&request(lines), &WsSettings::default());
        let expected = |head| {
            HandshakeOutcome::Http(super::super::http::HttpRequest {
                head,
                path: "/chat/room".into(),
                if_none_match: Some("\"abc\"".into()),
            })
        };
        let mut get = without("Upgrade");
        get.push("If-None-Match: \"abc\"");
        assert_eq!(plain(&get), expected(false));
        let mut h2c = with("Upgrade", "Upgrade: h2c");
        h2c.push("If-None-Match: \"abc\"");
        assert_eq!(plain(&h2c), expected(false));
        let mut head = get.clone();
        head[0] = "HEAD /chat/room?x=1 HTTP/1.1";
        assert_eq!(plain(&head), expected(true));
        let mut old = get.clone();
        old[0] = "GET /chat/room HTTP/1.0";
        assert_eq!(plain(&old), expected(false));
        let mut post = get.clone();
        post[0] = "POST /chat/room HTTP/1.1";
        assert_eq!(status_of(&post), 405);
        let text = String::from_utf8(error_response(405, "no")).unwrap();
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
        get.push("Content-Length: 3");
        assert_eq!(status_of(&get), 400);
    }

    #[test]
    fn a_second_origin_is_400() {
        let mut dup = valid_lines();
        dup.push("Origin: http://evil.example");
        assert_eq!(status_of(&dup), 400);
    }

    #[test]
    fn rejections_carry_the_headers_clients_need() {
        let text = String::from_utf8(error_response(426, "upgrade")).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.contains("\r\nUpgrade: websocket\r\n"));
        let text = String::from_utf8(error_response(405, "no")).unwrap();
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"));
    }

    #[test]
    fn error_response_is_well_formed_http() {
        let bytes = error_response(400, "bad request line");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = resp.parse(&bytes).unwrap() else {
            panic!("incomplete");
        };
        assert_eq!(resp.code, Some(400));
        assert_eq!(resp.reason, Some("Bad Request"));
        let len = resp
            .headers
            .iter()
            .find(|h| h.name == "Content-Length")
            .unwrap();
        let len: usize = std::str::from_utf8(len.value).unwrap().parse().unwrap();
        assert_eq!(&bytes[head..], b"bad request line\n");
        assert_eq!(len, bytes.len() - head);
        assert!(resp
            .headers
            .iter()
            .any(|h| h.name == "Connection" && h.value == b"close"));
    }

    #[test]
    fn accept_response_names_protocol_and_extension() {
        let req = UpgradeRequest {
            key: KEY.into(),
            ..UpgradeRequest::default()
        };
        let plain = String::from_utf8(accept_response(&req, None, None)).unwrap();
        assert_eq!(
            plain,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let params = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let full = String::from_utf8(accept_response(&req, Some("chat"), Some(&params))).unwrap();
        assert!(full.contains("\r\nSec-WebSocket-Protocol: chat\r\n"));
        assert!(full.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        ));
        assert!(full.ends_with("\r\n\r\n"));
    }
}
