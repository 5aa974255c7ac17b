"""A minimal blocking WebSocket client on a raw socket, for what a well-behaved
library refuses to do: never read, send unmasked or reserved frames, declare
huge lengths, send oversized handshakes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Closed(Exception):
    """The peer closed the TCP connection (EOF or reset)."""


def open_tcp(addr: tuple[str, int], rcvbuf: int | None = None, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Before connect, so the advertised window stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(addr)
    return sock


def upgrade_request(path: str, host: str = "localhost", key: str | None = None, extra: str = "") -> tuple[bytes, str]:
    key = key or base64.b64encode(os.urandom(16)).decode()
    text = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"{extra}"
        "\r\n"
    )
    return text.encode(), key


def read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, bytes already read past the header)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise Closed(f"EOF during HTTP response; got {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


class RawWebSocket:
    """A client connection after a successful upgrade."""

    def __init__(self, sock: socket.socket, leftover: bytes = b""):
        self.sock = sock
        self.buf = leftover
        self.sid: str | None = None

    @classmethod
    def connect(cls, addr: tuple[str, int], path: str, rcvbuf: int | None = None, timeout: float = 5.0,
                greeting: bool = True) -> "RawWebSocket":
        """Upgrades and, on a vhost (`greeting`), reads the session's first
        message, `{"connected": {"sid": ...}}` (kept as `.sid`)."""
        sock = open_tcp(addr, rcvbuf, timeout)
        request, key = upgrade_request(path, f"{addr[0]}:{addr[1]}")
        sock.sendall(request)
        status, headers, rest = read_http_response(sock)
        assert status == 101, f"upgrade refused: {status} {headers}"
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, headers
        raw = cls(sock, rest)
        if greeting:
            first = raw.read_json()
            assert set(first) == {"connected"}, f"first message {first!r}"
            raw.sid = first["connected"]["sid"]
        return raw

    # -- sending -----------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0,
                   declared_len: int | None = None) -> None:
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        length = len(payload) if declared_len is None else declared_len
        mask_bit = 0x80 if mask else 0
        if length < 126:
            header = struct.pack("!BB", first, mask_bit | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", first, mask_bit | 126, length)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, length)
        if mask:
            key = os.urandom(4)
            header += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + payload)

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_json(self, obj) -> None:
        self.send_text(json.dumps(obj))

    # -- receiving ---------------------------------------------------------

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self.buf)))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(f"reset: {e}") from e
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def _take(self, n: int) -> bytes:
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next server frame."""
        b0, b1 = self._take(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        assert not b1 & 0x80, "server frames must not be masked"
        return bool(b0 & 0x80), b0 & 0x0F, self._take(length)

    def read_message(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next data or close message; answers
        nothing, skips pings and pongs."""
        fin, opcode, payload = self.read_frame()
        while opcode in (OP_PING, OP_PONG):
            fin, opcode, payload = self.read_frame()
        while not fin:
            fin, _, more = self.read_frame()
            payload += more
        return opcode, payload

    def read_json(self):
        opcode, payload = self.read_message()
        assert opcode in (OP_TEXT, OP_BINARY), f"expected data, got opcode {opcode}: {payload!r}"
        return json.loads(payload)

    def read_close_code(self) -> int | None:
        """Reads until a close frame and returns its code (None if the frame
        carries none); raises Closed if the TCP connection ends first."""
        while True:
            opcode, payload = self.read_message()
            if opcode == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
