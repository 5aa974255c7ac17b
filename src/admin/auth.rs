//! The node cookie check in front of every admin route.
//!
//! The cookie is taken from `X-WebRocket-Cookie: <cookie>` (what
//! webrocket-ctl and webrocket-monitor send) or from
//! `Authorization: Bearer <cookie>` (what a Prometheus scrape config can send
//! with `authorization: {credentials_file: <storage>/<node>.cookie}`, which is
//! why `/metrics` needs no exception).

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::ApiState;

/// The header webrocket-ctl sends the node cookie in.
pub const COOKIE_HEADER: &str = "x-webrocket-cookie";

/// Middleware: answers 403 unless the request carries the node cookie.
pub(super) async fn require_cookie(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    match presented_cookie(request.headers()) {
        Some(cookie) if same_secret(cookie.as_bytes(), state.node.cookie.as_bytes()) => {
            next.run(request).await
        }
        _ => ApiError::forbidden().into_response(),
    }
}

/// The cookie a request presents, if any.
fn presented_cookie(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(COOKIE_HEADER) {
        return value.to_str().ok().map(str::trim);
    }
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares two secrets in time that depends only on their lengths, so a
/// remote caller cannot find the cookie byte by byte from response times.
/// The length of a cookie is public (40 hex characters).
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() {
        return false;
    }
    let difference = presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // Keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn same_secret_needs_equal_bytes_and_length() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn cookie_comes_from_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_cookie(&headers), None);
        headers.insert("authorization", HeaderValue::from_static("Bearer  c0ffee "));
        assert_eq!(presented_cookie(&headers), Some("c0ffee"));
        headers.insert(COOKIE_HEADER, HeaderValue::from_static("beef"));
        assert_eq!(presented_cookie(&headers), Some("beef"));
    }

    #[test]
    fn other_authorization_schemes_present_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static("Basic Zm9vOmJhcg=="),
        );
        assert_eq!(presented_cookie(&headers), None);
        headers.insert("authorization", HeaderValue::from_static("Bearer"));
        assert_eq!(presented_cookie(&headers), None);
    }
}
