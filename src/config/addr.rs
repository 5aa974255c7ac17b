//! [`HostPort`]: a peer address that may name a host (`node2.lan:9000`), for
//! cluster seeds. Listen addresses use `std::net::SocketAddr` instead,
//! because a socket binds to an IP, not a name.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `HOST:PORT` that is not resolved yet. IPv6 hosts are written in
/// brackets: `[::1]:9000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    host: String,
    port: u16,
}

/// A string that is not `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {text:?}: {reason} (expected HOST:PORT)")]
pub struct HostPortError {
    text: String,
    reason: &'static str,
}

impl HostPort {
    /// Parses `host:port`, `1.2.3.4:port` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Self, HostPortError> {
        let err = |reason| HostPortError {
            text: text.chars().take(64).collect(),
            reason,
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(|| err("no port"))?;
        let port = port.parse::<u16>().map_err(|_| err("bad port"))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => {
                v6.parse::<Ipv6Addr>()
                    .map_err(|_| err("bad IPv6 address"))?;
                host
            }
            None => {
                let ok = !host.is_empty()
                    && host.len() <= 253
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
                if !ok {
                    return Err(err("bad host name"));
                }
                host
            }
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The host part; IPv6 addresses keep their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(s: &str) -> Result<Self, HostPortError> {
        Self::parse(s)
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_ipv4_and_ipv6() {
        let a = HostPort::parse("node2.lan:9000").unwrap();
        assert_eq!((a.host(), a.port()), ("node2.lan", 9000));
        let b = HostPort::parse("10.0.0.1:1").unwrap();
        assert_eq!(b.to_string(), "10.0.0.1:1");
        let c = HostPort::parse("[::1]:8083").unwrap();
        assert_eq!((c.host(), c.port()), ("[::1]", 8083));
        assert_eq!(c.to_string().parse::<HostPort>().unwrap(), c);
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "node",
            ":80",
            "host:",
            "host:70000",
            "a b:1",
            "[zz]:1",
            "::1:80x",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
        let err = HostPort::parse("host").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid address "host": no port (expected HOST:PORT)"#
        );
    }
}
