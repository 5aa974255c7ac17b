//! The admin endpoint over plain HTTP, and the three ways a command fails.

use std::time::Duration;

use serde_json::Value;

/// Header that carries the node cookie.
const COOKIE_HEADER: &str = "X-WebRocket-Cookie";

/// How long one request may take in all. Adding a user hashes its secret
/// with argon2 on the server, which is slow on purpose.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad arguments or local setup (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The server refused the request (exit 1).
    #[error("{message} ({code}, HTTP {status})")]
    Server {
        /// HTTP status.
        status: u16,
        /// The API's error code, e.g. `NOT_FOUND`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The admin endpoint could not be reached or spoke nonsense (exit 3).
    #[error("cannot talk to the admin endpoint at {addr}: {reason}")]
    Connection {
        /// Where we tried.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

impl CtlError {
    /// The process exit code: 1 server error, 2 usage, 3 connection.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Server { .. } => 1,
            CtlError::Usage(_) => 2,
            CtlError::Connection { .. } => 3,
        }
    }
}

/// An HTTP method the admin API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Read.
    Get,
    /// Create or act.
    Post,
    /// Replace.
    Put,
    /// Remove.
    Delete,
}

/// One admin endpoint and the cookie to present to it.
pub struct Client {
    agent: ureq::Agent,
    addr: String,
    cookie: String,
}

impl Client {
    /// A client for the endpoint at `addr` (`HOST:PORT`).
    pub fn new(addr: &str, cookie: String) -> Self {
        let agent = ureq::Agent::config_builder()
            // Error statuses carry the API's JSON error; read it ourselves.
            .http_status_as_error(false)
            // The endpoint is local; a proxy from the environment is wrong.
            .proxy(None)
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        Client {
            agent,
            addr: addr.to_owned(),
            cookie,
        }
    }

    /// Sends a request and returns the JSON body of a 2xx answer.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CtlError> {
        let url = format!("http://{}{path}", self.addr);
        let payload = body.map(Value::to_string);
        let sent = match method {
            Method::Get => self
                .agent
                .get(&url)
                .header(COOKIE_HEADER, &self.cookie)
                .call(),
            Method::Delete => self
                .agent
                .delete(&url)
                .header(COOKIE_HEADER, &self.cookie)
                .call(),
            Method::Post | Method::Put => {
                let request = if method == Method::Post {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                request
                    .header(COOKIE_HEADER, &self.cookie)
                    .header("Content-Type", "application/json")
                    .send(payload.unwrap_or_default())
            }
        };
        let mut response = sent.map_err(|e| self.connection(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.connection(e))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        match (status, json) {
            (200..=299, Some(value)) => Ok(value),
            (200..=299, None) => Err(self.connection(format!("answer is not JSON: {text:.200}"))),
            (_, json) => Err(server_error(status, json, &text)),
        }
    }

    fn connection(&self, reason: impl std::fmt::Display) -> CtlError {
        CtlError::Connection {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }
}

/// The API's `{"error", "code"}`, or what can be said without it.
fn server_error(status: u16, json: Option<Value>, text: &str) -> CtlError {
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    CtlError::Server {
        status,
        code: field("code").unwrap_or_else(|| "HTTP_ERROR".into()),
        message: field("error").unwrap_or_else(|| format!("{text:.200}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_errors_carry_the_api_message_and_code() {
        let body = json!({"error": "vhost \"/x\" not found", "code": "NOT_FOUND"});
        let error = server_error(404, Some(body), "");
        assert_eq!(
            error.to_string(),
            "vhost \"/x\" not found (NOT_FOUND, HTTP 404)"
        );
        assert_eq!(error.exit_code(), 1);
        let error = server_error(502, None, "bad gateway");
        assert_eq!(error.to_string(), "bad gateway (HTTP_ERROR, HTTP 502)");
    }

    #[test]
    fn exit_codes_tell_the_kinds_apart() {
        assert_eq!(CtlError::Usage("x".into()).exit_code(), 2);
        let refused = CtlError::Connection {
            addr: "127.0.0.1:1".into(),
            reason: "refused".into(),
        };
        assert_eq!(refused.exit_code(), 3);
    }

    #[test]
    fn an_unreachable_endpoint_is_a_connection_error() {
        // Bind and drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(&format!("127.0.0.1:{port}"), "c".into());
        let error = client.call(Method::Get, "/vhosts", None).unwrap_err();
        assert_eq!(error.exit_code(), 3, "{error}");
    }
}
