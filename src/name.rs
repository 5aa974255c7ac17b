//! Validated identifiers: vhost paths, channel, user, event and node names,
//! access tokens, session ids, and the [`Permissions`] set.
//!
//! Every type here is a newtype that can only be built through validation
//! (`parse`, `TryFrom`, `FromStr`, serde), so code that holds a `ChannelName`
//! never re-checks it. The rules are those of the protocol spec, section 1:
//!
//! | type | rule |
//! |---|---|
//! | [`VhostPath`] | `^/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$`, at most 255 bytes |
//! | [`ChannelName`] | `^[A-Za-z0-9_][A-Za-z0-9_.-]*$`, at most 255 bytes |
//! | [`UserName`], [`NodeName`] | `^[A-Za-z0-9_][A-Za-z0-9_.@-]*$`, at most 255 bytes |
//! | [`EventName`] | non-empty, at most 255 bytes, no leading `:` |
//! | [`AccessToken`] | exactly 40 lowercase hex characters |
//! | [`SessionId`] | exactly 32 lowercase hex characters |
//! | [`ResourceName`] | `^[A-Za-z0-9_][A-Za-z0-9_-]*$`, at most 255 bytes |
//!
//! Pure: no I/O. The checks are written by hand (no regex engine) so that the
//! error can say which character at which byte is wrong.

mod permissions;

pub use permissions::Permissions;

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name, path or event accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Length of an [`AccessToken`] in hex characters (160 random bits).
pub const ACCESS_TOKEN_LEN: usize = 40;

/// Length of a [`SessionId`] in hex characters (128 random bits).
pub const SESSION_ID_LEN: usize = 32;

/// How much of a rejected value an error message quotes; client-controlled
/// input can be large and must not bloat logs or replies.
const QUOTE_LIMIT: usize = 64;

/// What kind of value failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A [`VhostPath`].
    VhostPath,
    /// A [`ChannelName`].
    ChannelName,
    /// A [`UserName`].
    UserName,
    /// An [`EventName`].
    EventName,
    /// An [`AccessToken`].
    AccessToken,
    /// A [`NodeName`].
    NodeName,
    /// A [`SessionId`].
    SessionId,
    /// A [`ResourceName`].
    ResourceName,
    /// A [`Permissions`] set.
    Permissions,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::VhostPath => "vhost path",
            NameKind::ChannelName => "channel name",
            NameKind::UserName => "user name",
            NameKind::EventName => "event name",
            NameKind::AccessToken => "access token",
            NameKind::NodeName => "node name",
            NameKind::SessionId => "session id",
            NameKind::ResourceName => "resource name",
            NameKind::Permissions => "permissions",
        })
    }
}

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameReason {
    /// The value is empty.
    Empty,
    /// The value is longer than allowed.
    TooLong {
        /// Length of the value in bytes.
        len: usize,
        /// The maximum allowed length in bytes.
        max: usize,
    },
    /// The value has the wrong fixed length.
    WrongLength {
        /// Length of the value in bytes.
        len: usize,
        /// The required length in bytes.
        expected: usize,
    },
    /// A character that is not allowed at this position.
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the value.
        at: usize,
    },
    /// A vhost path that does not start with `/`.
    NoLeadingSlash,
    /// A vhost path with an empty segment (`//` or a trailing `/`).
    EmptySegment {
        /// Byte offset of the `/` that starts the empty segment.
        at: usize,
    },
    /// A permission word other than READ, WRITE, MANAGE, NONE or ALL.
    UnknownPermission(String),
}

impl fmt::Display for NameReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameReason::Empty => f.write_str("must not be empty"),
            NameReason::TooLong { len, max } => {
                write!(f, "is {len} bytes long, at most {max} allowed")
            }
            NameReason::WrongLength { len, expected } => {
                write!(f, "is {len} characters long, must be exactly {expected}")
            }
            NameReason::BadChar { ch, at } => {
                write!(f, "character {ch:?} at byte {at} is not allowed")
            }
            NameReason::NoLeadingSlash => f.write_str("must start with '/'"),
            NameReason::EmptySegment { at } => write!(f, "empty path segment at byte {at}"),
            NameReason::UnknownPermission(word) => write!(
                f,
                "unknown permission {word:?} (expected READ, WRITE, MANAGE, NONE or ALL)"
            ),
        }
    }
}

/// A value that is not a valid name of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    kind: NameKind,
    value: String,
    reason: NameReason,
}

impl NameError {
    pub(crate) fn new(kind: NameKind, value: &str, reason: NameReason) -> Self {
        Self {
            kind,
            value: quote(value),
            reason,
        }
    }

    /// What kind of value was rejected.
    pub fn kind(&self) -> NameKind {
        self.kind
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &NameReason {
        &self.reason
    }

    /// The rejected value, shortened to at most 64 bytes plus an ellipsis.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Shortens `value` to [`QUOTE_LIMIT`] bytes on a character boundary.
fn quote(value: &str) -> String {
    if value.len() <= QUOTE_LIMIT {
        return value.to_owned();
    }
    let mut end = QUOTE_LIMIT;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

fn check_len(s: &str, max: usize) -> Result<(), NameReason> {
    if s.is_empty() {
        Err(NameReason::Empty)
    } else if s.len() > max {
        Err(NameReason::TooLong { len: s.len(), max })
    } else {
        Ok(())
    }
}

/// The first character must be `[A-Za-z0-9_]`, the rest may also be any of
/// `extra`. Shared by channel, user and node names.
fn check_word(s: &str, extra: &[char]) -> Result<(), NameReason> {
    check_len(s, MAX_NAME_LEN)?;
    for (at, ch) in s.char_indices() {
        let ok = ch.is_ascii_alphanumeric() || ch == '_' || (at > 0 && extra.contains(&ch));
        if !ok {
            return Err(NameReason::BadChar { ch, at });
        }
    }
    Ok(())
}

fn check_vhost_path(s: &str) -> Result<(), NameReason> {
    check_len(s, MAX_NAME_LEN)?;
    if !s.starts_with('/') {
        return Err(NameReason::NoLeadingSlash);
    }
    let mut segment_start = 0;
    for (at, ch) in s.char_indices() {
        if ch == '/' {
            if at > 0 && at == segment_start + 1 {
                return Err(NameReason::EmptySegment { at: segment_start });
            }
            segment_start = at;
        } else if !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            return Err(NameReason::BadChar { ch, at });
        }
    }
    if segment_start + 1 == s.len() {
        return Err(NameReason::EmptySegment { at: segment_start });
    }
    Ok(())
}

fn check_channel(s: &str) -> Result<(), NameReason> {
    check_word(s, &['.', '-'])
}

/// One path segment after the vhost's (`/<vhost>/<resource>`): no dots,
/// so that a resource path never looks like a file name.
fn check_resource(s: &str) -> Result<(), NameReason> {
    check_word(s, &['-'])
}

fn check_user(s: &str) -> Result<(), NameReason> {
    check_word(s, &['.', '@', '-'])
}

fn check_event(s: &str) -> Result<(), NameReason> {
    check_len(s, MAX_NAME_LEN)?;
    if s.starts_with(':') {
        return Err(NameReason::BadChar { ch: ':', at: 0 });
    }
    Ok(())
}

fn check_hex(s: &str, expected: usize) -> Result<(), NameReason> {
    if let Some((at, ch)) = s
        .char_indices()
        .find(|&(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        return Err(NameReason::BadChar { ch, at });
    }
    if s.len() != expected {
        return Err(NameReason::WrongLength {
            len: s.len(),
            expected,
        });
    }
    Ok(())
}

fn check_token(s: &str) -> Result<(), NameReason> {
    check_hex(s, ACCESS_TOKEN_LEN)
}

fn check_session_id(s: &str) -> Result<(), NameReason> {
    check_hex(s, SESSION_ID_LEN)
}

/// `N` random bytes as `2 * N` lowercase hex characters.
fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How a name type holds its validated text: a `String`, or for the
/// fixed-length hex ids a [`Hex`] array that costs no allocation.
trait Repr: Sized {
    /// Wraps text that has passed the type's check.
    fn from_checked(s: String) -> Self;
    fn as_str(&self) -> &str;
    fn into_string(self) -> String;
}

impl Repr for String {
    fn from_checked(s: String) -> Self {
        s
    }

    fn as_str(&self) -> &str {
        self
    }

    fn into_string(self) -> String {
        self
    }
}

/// `N` lowercase hex characters held inline. Every session has its id twice
/// (its own record and the id index), so keeping ids out of the heap saves
/// two allocations per connection (ARCHITECTURE.md, "Memory per
/// connection"). Hashes as the `str` it holds, so maps keyed by it can be
/// queried with a plain `&str`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Repr for Hex<N> {
    /// `s` is ASCII of length `N` (the check guarantees it).
    fn from_checked(s: String) -> Self {
        let mut bytes = [b'0'; N];
        let n = s.len().min(N);
        bytes[..n].copy_from_slice(&s.as_bytes()[..n]);
        Hex(bytes)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn into_string(self) -> String {
        self.as_str().to_owned()
    }
}

impl<const N: usize> std::hash::Hash for Hex<N> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Defines a newtype, held as `$repr` (`String` unless given), that is
/// validated by `$check` wherever it is built, with the conversions every
/// name type shares.
macro_rules! validated_name {
    ($(#[$meta:meta])* $name:ident, $kind:ident, $check:path) => {
        validated_name!($(#[$meta])* $name, $kind, $check, String);
    };
    ($(#[$meta:meta])* $name:ident, $kind:ident, $check:path, $repr:ty) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($repr);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn parse(s: &str) -> Result<Self, NameError> {
                Self::try_from(s.to_owned())
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                Repr::as_str(&self.0)
            }

            /// Unwraps the validated text.
            pub fn into_string(self) -> String {
                Repr::into_string(self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, NameError> {
                match $check(&s) {
                    Ok(()) => Ok(Self(Repr::from_checked(s))),
                    Err(reason) => Err(NameError::new(NameKind::$kind, &s, reason)),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        // Derived Hash/Eq/Ord of a one-field newtype agree with `str`'s, so
        // maps keyed by a name can be queried with a plain `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.into_string()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Implements `Debug` as `Type("value")`.
macro_rules! plain_debug {
    ($($name:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0).finish()
            }
        }
    )*};
}

validated_name!(
    /// A vhost path such as `/chat` or `/apps/chat`: the WebSocket endpoint
    /// path and the namespace for channels, users and workers.
    VhostPath,
    VhostPath,
    check_vhost_path
);
validated_name!(
    /// A channel name such as `news` or `room-1.public`.
    ChannelName,
    ChannelName,
    check_channel
);
validated_name!(
    /// A user name within a vhost, such as `alice` or `bob@example.com`.
    UserName,
    UserName,
    check_user
);
validated_name!(
    /// The name of a broadcast or trigger event. Names starting with `:` are
    /// reserved for the server.
    EventName,
    EventName,
    check_event
);
validated_name!(
    /// A cluster node's name; it also names the node's cookie file and run
    /// directory, so it is restricted like a user name (no `/`, no leading
    /// `.`).
    NodeName,
    NodeName,
    check_user
);
validated_name!(
    /// A vhost's backend access token: 40 lowercase hex characters.
    AccessToken,
    AccessToken,
    check_token
);
validated_name!(
    /// A client session's id: 32 lowercase hex characters, unique per node
    /// with overwhelming probability.
    SessionId,
    SessionId,
    check_session_id,
    Hex<SESSION_ID_LEN>
);

validated_name!(
    /// A MonoRail resource of a vhost, such as `nodes`: served at
    /// `/<vhost>/<resource>`.
    ResourceName,
    ResourceName,
    check_resource
);

plain_debug!(
    ResourceName,
    VhostPath,
    ChannelName,
    UserName,
    EventName,
    NodeName,
    SessionId
);

// The token grants backend access, so it is kept out of debug logs.
impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessToken({}…)", &self.0[..6])
    }
}

impl AccessToken {
    /// A new random token (160 bits from the thread-local CSPRNG).
    pub fn generate() -> Self {
        Self(random_hex::<20>())
    }
}

impl SessionId {
    /// A new random session id (128 bits from the thread-local CSPRNG).
    pub fn generate() -> Self {
        Self(Hex::from_checked(random_hex::<16>()))
    }
}

#[cfg(test)]
mod tests;
