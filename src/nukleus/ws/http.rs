//! Plain HTTP on the WebSocket port: a request without `Upgrade: websocket`
//! gets one answer and the connection is closed (`Connection: close`).
//!
//! | path | answer |
//! |---|---|
//! | `/webrocket.js` | the JavaScript client (`clients/js/webrocket.js`) |
//! | `/webrocket.d.ts` | its TypeScript declarations |
//! | `/example/chat.html` | the chat example page (`examples/chat.html`) |
//! | `/healthz` | 200 `ok` while the node serves, 503 `draining` once it stops accepting |
//! | a vhost path | 426 (WebSocket only; decided by the nukleus, which knows the bindings) |
//! | anything else | 404 |
//!
//! GET and HEAD only (HEAD: the same headers, no body); other methods get
//! 405 with `Allow: GET, HEAD`. Files are embedded in the binary; each
//! answer carries an `ETag` (a hash of the file) and `Cache-Control: public,
//! max-age=300`, and a matching `If-None-Match` gets 304 with no body.
//! Files also carry `Access-Control-Allow-Origin: *`: browsers load module
//! scripts in CORS mode, so a page served elsewhere can import the client
//! (the files are public; which origins may open a session is the vhost's
//! `allowed_origins`).
//!
//! Bounds: the request head is bounded like an upgrade request
//! (`max_handshake_size`, then 431); a response is at most its headers and
//! one embedded file, each smaller than [`MAX_FILE_SIZE`] (checked at compile
//! time). No request body is read (a request that announces one is 400).

use std::sync::OnceLock;

use super::handshake::error_response;

/// Largest embedded file; the compile-time checks below keep every file
/// under it so an answer's size is known.
pub const MAX_FILE_SIZE: usize = 256 * 1024;
/// How long browsers and proxies may keep a file before revalidating it.
pub const MAX_AGE_SECS: u32 = 300;

const CLIENT_JS: &str = include_str!("../../../clients/js/webrocket.js");
const CLIENT_DTS: &str = include_str!("../../../clients/js/webrocket.d.ts");
const CHAT_HTML: &str = include_str!("../../../examples/chat.html");

const _: () = assert!(CLIENT_JS.len() < MAX_FILE_SIZE);
const _: () = assert!(CLIENT_DTS.len() < MAX_FILE_SIZE);
const _: () = assert!(CHAT_HTML.len() < MAX_FILE_SIZE);

/// A plain (non-upgrade) GET or HEAD request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// HEAD: answer the headers only.
    pub head: bool,
    /// The path of the request target, without the query.
    pub path: String,
    /// `If-None-Match`, if any.
    pub if_none_match: Option<String>,
}

/// Whether the node takes new clients; `/healthz` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Serving.
    Serving,
    /// Stopping: draining or shutting down.
    Draining,
}

struct File {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const FILES: [File; 3] = [
    File {
        path: "/webrocket.js",
        content_type: "text/javascript; charset=utf-8",
        body: CLIENT_JS,
    },
    File {
        path: "/webrocket.d.ts",
        content_type: "text/plain; charset=utf-8",
        body: CLIENT_DTS,
    },
    File {
        path: "/example/chat.html",
        content_type: "text/html; charset=utf-8",
        body: CHAT_HTML,
    },
];

/// The ETag of each of [`FILES`], computed once.
fn etags() -> &'static [String; 3] {
    static ETAGS: OnceLock<[String; 3]> = OnceLock::new();
    ETAGS.get_or_init(|| FILES.each_ref().map(|f| etag_of(f.body.as_bytes())))
}

/// A strong ETag: FNV-1a (64 bit) of the bytes, quoted.
fn etag_of(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}-{:x}\"", bytes.len())
}

/// The whole answer to `request` (headers, and the body unless HEAD).
pub fn respond(request: &HttpRequest, health: Health) -> Vec<u8> {
    if request.path == "/healthz" {
        let (status, body) = match health {
            Health::Serving => (200, "ok\n"),
            Health::Draining => (super::handshake::status::SERVICE_UNAVAILABLE, "draining\n"),
        };
        return answer(
            request,
            status,
            &[
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Cache-Control", "no-store"),
            ],
            body,
        );
    }
    let Some(i) = FILES.iter().position(|f| f.path == request.path) else {
        return without_body(
            request,
            error_response(super::handshake::status::NOT_FOUND, "Not Found"),
        );
    };
    let (file, etag) = (&FILES[i], &etags()[i]);
    let cache = format!("public, max-age={MAX_AGE_SECS}");
    if matches_etag(request.if_none_match.as_deref(), etag) {
        return answer(
            request,
            304,
            &[("ETag", etag), ("Cache-Control", &cache)],
            "",
        );
    }
    answer(
        request,
        200,
        &[
            ("Content-Type", file.content_type),
            ("ETag", etag),
            ("Cache-Control", &cache),
            ("Access-Control-Allow-Origin", "*"),
        ],
        file.body,
    )
}

/// `If-None-Match: *` or a list that holds `etag` (weak or strong).
fn matches_etag(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(list) = if_none_match else {
        return false;
    };
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn answer(request: &HttpRequest, status: u16, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", status_text(status));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if status != 304 {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    if !request.head {
        out.push_str(body);
    }
    out.into_bytes()
}

/// An error response, cut after its headers for a HEAD request.
fn without_body(request: &HttpRequest, mut response: Vec<u8>) -> Vec<u8> {
    if request.head {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            response.truncate(end + 4);
        }
    }
    response
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        _ => "Service Unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> HttpRequest {
        HttpRequest {
            path: path.into(),
            ..HttpRequest::default()
        }
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn serves_the_client_with_caching_headers() {
        let response = text(respond(&get("/webrocket.js"), Health::Serving));
        let etag = &etags()[0];
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/javascript; charset=utf-8\r\n\
             ETag: {etag}\r\nCache-Control: public, max-age=300\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            CLIENT_JS.len()
        );
        assert_eq!(response, format!("{head}{CLIENT_JS}"));
    }

    #[test]
    fn head_has_the_headers_and_no_body() {
        let request = HttpRequest {
            head: true,
            ..get("/webrocket.js")
        };
        let response = text(respond(&request, Health::Serving));
        assert!(
            response.ends_with("Connection: close\r\n\r\n"),
            "{response}"
        );
        assert!(response.contains(&format!("Content-Length: {}\r\n", CLIENT_JS.len())));
        let missing = text(respond(
            &HttpRequest {
                head: true,
                ..get("/nope")
            },
            Health::Serving,
        ));
        assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(missing.ends_with("\r\n\r\n"), "{missing}");
    }

    #[test]
    fn a_matching_etag_is_304_without_body() {
        let etag = etags()[2].clone();
        for tag in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"x\", {etag}"),
            "*".into(),
        ] {
            let request = HttpRequest {
                if_none_match: Some(tag),
                ..get("/example/chat.html")
            };
            assert_eq!(
                text(respond(&request, Health::Serving)),
                format!(
                    "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n\
                     Cache-Control: public, max-age=300\r\nConnection: close\r\n\r\n"
                )
            );
        }
        let stale = HttpRequest {
            if_none_match: Some("\"0-0\"".into()),
            ..get("/example/chat.html")
        };
        assert!(text(respond(&stale, Health::Serving)).starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn healthz_follows_the_node() {
        assert_eq!(
            text(respond(&get("/healthz"), Health::Serving)),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Cache-Control: no-store\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        );
        assert!(text(respond(&get("/healthz"), Health::Draining))
            .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    }

    #[test]
    fn anything_else_is_404() {
        for path in [
            "/",
            "/webrocket",
            "/example/",
            "/healthz/x",
            "/../etc/passwd",
        ] {
            let response = text(respond(&get(path), Health::Serving));
            assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{path}");
            assert!(response.contains("\r\nConnection: close\r\n"));
        }
    }

    #[test]
    fn etags_differ_by_content() {
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        assert_eq!(etag_of(b""), "\"cbf29ce484222325-0\"");
    }
}
