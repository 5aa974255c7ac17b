//! BIND, UNBIND, PREPARE and UNPREPARE for the tcp nukleus.
//!
//! ```text
//! BIND    i64 correlation, string handler,
//!         u8 kind (0x00 device | 0x01 IPv4 | 0x02 IPv6),
//!         string device | 4 bytes | 16 bytes, u16 port (network order)
//!   -> BOUND i64 correlation, i64 ref, address union + port actually bound
//! PREPARE i64 correlation, string handler, u8 kind (0x01 | 0x02),
//!         4 | 16 bytes, u16 port
//!   -> PREPARED i64 correlation, i64 ref
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::net::TcpListener;
use mio::{Interest, Token};
use socket2::{Domain, Socket, Type};

use super::{Binding, Entry, Prepared, TcpNukleus};
use crate::nukleus::command::{self, Response};
use crate::nukleus::frame::{self, FrameError, Reader, Writer};
use crate::nukleus::plumbing::Pending;

/// Where a BIND listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddress {
    /// A device name (all its addresses, via SO_BINDTODEVICE).
    Device(String),
    /// An IP address.
    Ip(IpAddr),
}

/// A decoded tcp BIND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The nukleus that gets the accepted streams.
    pub handler: String,
    /// Where to listen.
    pub address: BindAddress,
    /// The port (0 picks one).
    pub port: u16,
}

impl Bind {
    /// The command body after the correlation id.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.put_string(Some(&self.handler));
        match &self.address {
            BindAddress::Device(name) => {
                body.push(frame::ADDRESS_DEVICE);
                body.put_string(Some(name));
            }
            BindAddress::Ip(IpAddr::V4(ip)) => {
                body.push(frame::ADDRESS_IPV4);
                body.extend_from_slice(&ip.octets());
            }
            BindAddress::Ip(IpAddr::V6(ip)) => {
                body.push(frame::ADDRESS_IPV6);
                body.extend_from_slice(&ip.octets());
            }
        }
        body.extend_from_slice(&self.port.to_be_bytes());
        body
    }
}

/// Decodes a tcp BIND body (after the correlation id).
pub fn decode_bind(body: &[u8]) -> Result<Bind, FrameError> {
    let mut r = Reader::new(body);
    let handler = r.string()?.ok_or(FrameError::BadString)?.to_string();
    let address = match r.u8()? {
        frame::ADDRESS_DEVICE => {
            BindAddress::Device(r.string()?.ok_or(FrameError::BadString)?.to_string())
        }
        frame::ADDRESS_IPV4 => {
            let mut ip = [0u8; 4];
            for b in &mut ip {
                *b = r.u8()?;
            }
            BindAddress::Ip(IpAddr::V4(Ipv4Addr::from(ip)))
        }
        frame::ADDRESS_IPV6 => {
            let mut ip = [0u8; 16];
            for b in &mut ip {
                *b = r.u8()?;
            }
            BindAddress::Ip(IpAddr::V6(Ipv6Addr::from(ip)))
        }
        other => return Err(FrameError::BadAddress(other)),
    };
    let port = r.u16_be()?;
    Ok(Bind {
        handler,
        address,
        port,
    })
}

/// Encodes a tcp PREPARE body (after the correlation id).
pub fn encode_prepare(handler: &str, remote: SocketAddr) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_string(Some(handler));
    body.put_socket_addr(remote);
    body
}

fn listen(bind: &Bind) -> std::io::Result<TcpListener> {
    let (addr, device) = match &bind.address {
        BindAddress::Ip(ip) => (SocketAddr::new(*ip, bind.port), None),
        BindAddress::Device(name) => (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), bind.port),
            Some(name.as_bytes()),
        ),
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if device.is_some() {
        socket.bind_device(device)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(TcpListener::from_std(socket.into()))
}

impl TcpNukleus {
    pub(super) fn on_command(&mut self, pending: Pending) {
        let correlation = pending.correlation;
        let body = pending.args.as_slice();
        let response = match pending.type_id {
            command::BIND => self.bind(correlation, body),
            command::UNBIND => self.unbind(correlation, body),
            command::PREPARE => self.prepare(correlation, body),
            command::UNPREPARE => self.unprepare(correlation, body),
            _ => None,
        };
        self.plumbing
            .respond(response.unwrap_or(Response::error(correlation)));
    }

    fn bind(&mut self, correlation: i64, body: &[u8]) -> Option<Response> {
        let bind = decode_bind(body).ok()?;
        self.plumbing.target_index(&bind.handler)?;
        let listener = match listen(&bind) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, ?bind, "bind failed");
                return None;
            }
        };
        let local = listener.local_addr().ok()?;
        let reference = self.next_ref;
        self.next_ref += 1;
        let token = Token(self.entries.insert(Entry::Listener {
            listener,
            binding: reference,
        }));
        if let Some(Entry::Listener { listener, .. }) = self.entries.get_mut(token.0) {
            self.poll
                .registry()
                .register(listener, token, Interest::READABLE)
                .ok()?;
        }
        self.bindings.insert(
            reference,
            Binding {
                handler: bind.handler,
                token,
            },
        );
        tracing::info!(%local, reference, "tcp bound");
        let mut response = Response::with_ref(command::BIND, correlation, reference);
        response.address = Some(local);
        Some(response)
    }

    fn unbind(&mut self, correlation: i64, body: &[u8]) -> Option<Response> {
        let reference = Reader::new(body).i64().ok()?;
        let binding = self.bindings.remove(&reference)?;
        if let Some(Entry::Listener { mut listener, .. }) = self.entries.remove(binding.token.0) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        Some(Response::ok(command::UNBIND, correlation))
    }

    fn prepare(&mut self, correlation: i64, body: &[u8]) -> Option<Response> {
        let mut r = Reader::new(body);
        let handler = r.string().ok()??.to_string();
        let remote = r.socket_addr().ok()?;
        let reference = self.next_ref;
        self.next_ref += 1;
        self.prepared
            .insert(reference, Prepared { handler, remote });
        Some(Response::with_ref(command::PREPARE, correlation, reference))
    }

    fn unprepare(&mut self, correlation: i64, body: &[u8]) -> Option<Response> {
        let reference = Reader::new(body).i64().ok()?;
        self.prepared.remove(&reference)?;
        Some(Response::ok(command::UNPREPARE, correlation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_round_trips_every_address_kind() {
        for address in [
            BindAddress::Ip("127.0.0.1".parse().unwrap()),
            BindAddress::Ip("::1".parse().unwrap()),
            BindAddress::Device("lo".into()),
        ] {
            let bind = Bind {
                handler: "ws".into(),
                address,
                port: 8080,
            };
            assert_eq!(decode_bind(&bind.encode()), Ok(bind));
        }
    }

    #[test]
    fn bind_layout_is_byte_exact() {
        let bind = Bind {
            handler: "ws".into(),
            address: BindAddress::Ip("10.0.0.1".parse().unwrap()),
            port: 80,
        };
        assert_eq!(bind.encode(), [2, b'w', b's', 1, 10, 0, 0, 1, 0, 80]);
        assert!(decode_bind(&[2, b'w', b's', 7]).is_err());
    }
}
