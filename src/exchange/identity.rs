//! Backend identities: the ZeroMQ routing id every backend socket sets.
//!
//! ```text
//! dlr:<vhost path>:<vhost access token>:<uuid>     worker (DEALER)
//! req:<vhost path>:<vhost access token>:<uuid>     request client (REQ)
//! ```
//!
//! Pure: parsing and the token comparison; the current token comes from the
//! caller (the durable state), so a regenerated token is seen at once.

use std::fmt;

use crate::name::{AccessToken, VhostPath, ACCESS_TOKEN_LEN};

pub use crate::limits::MAX_BACKEND_UUID_LEN as MAX_UUID_LEN;

/// What kind of backend socket an identity names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `dlr:` a worker: joins the lobby, gets triggers, may also send
    /// requests.
    Worker,
    /// `req:` a request client: sends requests, gets exactly one reply each.
    Request,
}

impl Role {
    /// The identity prefix, without the colon.
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Worker => "dlr",
            Role::Request => "req",
        }
    }
}

/// Why an identity was refused (`ER 402`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not `dlr:` or `req:` followed by three `:`-separated parts, or not
    /// UTF-8.
    #[error("identity is not `dlr|req:<vhost>:<token>:<uuid>`")]
    Shape,
    /// The vhost part is not a valid vhost path.
    #[error("identity names an invalid vhost path")]
    VhostPath,
    /// The token part is not 40 lowercase hex characters.
    #[error("identity token is not {ACCESS_TOKEN_LEN} lowercase hex characters")]
    TokenShape,
    /// The uuid part is empty, too long or has characters other than
    /// `[A-Za-z0-9_-]`.
    #[error("identity uuid must be 1..={MAX_UUID_LEN} characters of [A-Za-z0-9_-]")]
    Uuid,
    /// No such vhost.
    #[error("no vhost {0}")]
    UnknownVhost(VhostPath),
    /// The token is not the vhost's current token.
    #[error("wrong or stale access token for vhost {0}")]
    WrongToken(VhostPath),
}

/// A parsed (not yet verified) backend identity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    role: Role,
    vhost: VhostPath,
    token: String,
    text: String,
}

// The token is a credential: keep it out of logs.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("role", &self.role)
            .field("vhost", &self.vhost)
            .field("id", &self.redacted())
            .finish()
    }
}

impl Identity {
    /// Parses the routing id bytes of a backend socket.
    pub fn parse(bytes: &[u8]) -> Result<Identity, IdentityError> {
        let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::Shape)?;
        let mut parts = text.splitn(4, ':');
        let (Some(prefix), Some(vhost), Some(token), Some(uuid)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdentityError::Shape);
        };
        let role = match prefix {
            "dlr" => Role::Worker,
            "req" => Role::Request,
            _ => return Err(IdentityError::Shape),
        };
        let vhost = VhostPath::parse(vhost).map_err(|_| IdentityError::VhostPath)?;
        if token.len() != ACCESS_TOKEN_LEN
            || !token
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(IdentityError::TokenShape);
        }
        if uuid.is_empty()
            || uuid.len() > MAX_UUID_LEN
            || !uuid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(IdentityError::Uuid);
        }
        Ok(Identity {
            role,
            vhost,
            token: token.to_owned(),
            text: text.to_owned(),
        })
    }

    /// Worker or request client.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The vhost the socket belongs to.
    pub fn vhost(&self) -> &VhostPath {
        &self.vhost
    }

    /// The whole routing id, as sent (contains the token).
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The identity with the token replaced by its first 6 characters, for
    /// logs and the admin API.
    pub fn redacted(&self) -> String {
        let uuid = self.text.rsplit(':').next().unwrap_or("");
        format!(
            "{}:{}:{}…:{}",
            self.role.prefix(),
            self.vhost,
            &self.token[..6],
            uuid
        )
    }

    /// Whether the identity carries `current`, the vhost's token now.
    /// `current` is `None` when the vhost does not exist.
    pub fn verify(&self, current: Option<&AccessToken>) -> Result<(), IdentityError> {
        let Some(current) = current else {
            return Err(IdentityError::UnknownVhost(self.vhost.clone()));
        };
        if constant_time_eq(current.as_str().as_bytes(), self.token.as_bytes()) {
            Ok(())
        } else {
            Err(IdentityError::WrongToken(self.vhost.clone()))
        }
    }
}

/// Compares secrets without leaking the position of the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";

    fn id(text: &str) -> Result<Identity, IdentityError> {
        Identity::parse(text.as_bytes())
    }

    #[test]
    fn parses_worker_and_request_identities() {
        let uuid = "6f1c1c9e-6a8e-4b0f-9d43-0e2f6a1b7c11";
        let worker = id(&format!("dlr:/chat:{TOKEN}:{uuid}")).unwrap();
        assert_eq!(worker.role(), Role::Worker);
        assert_eq!(worker.vhost().as_str(), "/chat");
        assert_eq!(
            worker.as_bytes(),
            format!("dlr:/chat:{TOKEN}:{uuid}").as_bytes()
        );
        let request = id(&format!("req:/a/b-c:{TOKEN}:x")).unwrap();
        assert_eq!(request.role(), Role::Request);
        assert_eq!(request.vhost().as_str(), "/a/b-c");
    }

    #[test]
    fn refuses_bad_shapes() {
        assert_eq!(id("").unwrap_err(), IdentityError::Shape);
        assert_eq!(id("dlr:/chat").unwrap_err(), IdentityError::Shape);
        assert_eq!(
            id(&format!("pub:/chat:{TOKEN}:u")).unwrap_err(),
            IdentityError::Shape
        );
        assert_eq!(
            Identity::parse(b"dlr:/chat:\xff:u").unwrap_err(),
            IdentityError::Shape
        );
        assert_eq!(
            id(&format!("dlr:chat:{TOKEN}:u")).unwrap_err(),
            IdentityError::VhostPath
        );
        assert_eq!(
            id("dlr:/chat:0123:u").unwrap_err(),
            IdentityError::TokenShape
        );
        let upper = TOKEN.to_uppercase();
        assert_eq!(
            id(&format!("dlr:/chat:{upper}:u")).unwrap_err(),
            IdentityError::TokenShape
        );
        assert_eq!(
            id(&format!("dlr:/chat:{TOKEN}:")).unwrap_err(),
            IdentityError::Uuid
        );
        assert_eq!(
            id(&format!("dlr:/chat:{TOKEN}:a:b")).unwrap_err(),
            IdentityError::Uuid
        );
        let long = "u".repeat(MAX_UUID_LEN + 1);
        assert_eq!(
            id(&format!("dlr:/chat:{TOKEN}:{long}")).unwrap_err(),
            IdentityError::Uuid
        );
    }

    #[test]
    fn verifies_against_the_current_token() {
        let identity = id(&format!("dlr:/chat:{TOKEN}:u")).unwrap();
        let current = AccessToken::parse(TOKEN).unwrap();
        assert_eq!(identity.verify(Some(&current)), Ok(()));
        let regenerated = AccessToken::generate();
        assert!(matches!(
            identity.verify(Some(&regenerated)),
            Err(IdentityError::WrongToken(_))
        ));
        assert!(matches!(
            identity.verify(None),
            Err(IdentityError::UnknownVhost(_))
        ));
    }

    #[test]
    fn debug_and_redacted_hide_the_token() {
        let identity = id(&format!("req:/chat:{TOKEN}:abc")).unwrap();
        let shown = format!("{identity:?} {}", identity.redacted());
        assert!(!shown.contains(TOKEN));
        assert!(identity.redacted().starts_with("req:/chat:012345…:abc"));
    }
}
