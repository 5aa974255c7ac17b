"""Section 5: bad input and limits. Every bad session gets a clear reaction
(error reply, HTTP status or close code) and no other session notices."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from contextlib import asynccontextmanager

import pytest
import websockets

from conftest import (
    ConnectionClosed,
    Server,
    assert_error,
    connect,
    expect_silence,
    ping_pong,
    recv,
    render_config,
    request,
    send,
    vhost,
)
from rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    Closed,
    RawWebSocket,
    open_tcp,
    read_http_response,
    upgrade_request,
)

MAX_MESSAGE = 16 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bad-input")
    config = render_config(
        [vhost("/chat", anonymous=["READ", "WRITE"], channels=["calm"]), vhost("/other", anonymous=["READ"])],
        limits={"max_message_size": "16KiB", "max_frame_size": "16KiB"},
    )
    server = Server(workdir, config)
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def bystander(srv: Server):
    """A well-behaved session, subscribed before the bad one acts. On exit it
    must still be served: a broadcast reaches it, in order, and the server
    process is alive."""
    async with connect(srv.url()) as ws:
        assert await request(ws, "subscribe", {"channel": "calm"}) == {"subscribed": "calm"}
        yield ws
        assert srv.alive, f"server died\n{srv.logs()}"
        async with connect(srv.url()) as pub:
            for i in range(3):
                assert await request(pub, "broadcast", {"event": "still", "channel": "calm", "data": i}) == {
                    "broadcasted": "calm"
                }
        for i in range(3):
            assert await recv(ws) == {"still": {"channel": "calm", "data": i, "user": None}}
        await ping_pong(ws)


async def expect_close(ws, code: int) -> None:
    """The server closes `ws` with a close frame carrying `code`."""
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(100):  # skip replies that were already on the way
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None, f"no close frame from the server ({info.value})"
    assert info.value.rcvd.code == code, f"close code {info.value.rcvd.code}, expected {code}"


def raw_expect_close(raw: RawWebSocket, code: int) -> None:
    raw.sock.settimeout(5)
    try:
        got = raw.read_close_code()
    except Closed as e:
        pytest.fail(f"connection ended without a close frame ({e}); expected close {code}")
    except socket.timeout:
        pytest.fail(f"server did not close the connection; expected close {code}")
    assert got == code, f"close code {got}, expected {code}"
    # Then the server closes the TCP connection.
    try:
        while True:
            raw.read_frame()
    except Closed:
        pass
    except socket.timeout:
        pytest.fail("TCP connection still open 5 s after the close frame")
    finally:
        raw.close()


# ---------------------------------------------------------------------------
# Bad JSON: an error reply, the session goes on
# ---------------------------------------------------------------------------

async def test_bad_json_is_answered_and_session_goes_on(srv):
    async with bystander(srv):
        async with connect(srv.url()) as ws:
            for text in ["{", "nope", "[]", '{"a":1,"b":2}', "{}", "\"\\ud800\""]:
                await ws.send(text)
                assert_error(await recv(ws), "INVALID_MESSAGE_FORMAT")
            assert await request(ws, "subscribe", {"channel": "calm"}) == {"subscribed": "calm"}


async def test_deeply_nested_json_does_not_crash(srv):
    async with bystander(srv):
        async with connect(srv.url()) as ws:
            # A channel nobody is subscribed to, so nothing is delivered.
            assert await request(ws, "subscribe", {"channel": "deep"}) == {"subscribed": "deep"}
            assert await request(ws, "unsubscribe", {"channel": "deep"}) == {"unsubscribed": "deep"}
            depth = 5000  # 10 KB, under max_message_size
            await ws.send('{"broadcast": {"event": "e", "channel": "deep", "data": ' + "[" * depth + "]" * depth + "}}")
            reply = await recv(ws)
            # Either a clear error or a normal broadcast; never a crash.
            assert "err" in reply or reply == {"broadcasted": "deep"}, reply
            await ping_pong(ws)


# ---------------------------------------------------------------------------
# Size limits: close 1009
# ---------------------------------------------------------------------------

def big_broadcast(size: int) -> str:
    head = '{"broadcast": {"event": "e", "channel": "calm", "data": "'
    tail = '"}}'
    return head + "x" * (size - len(head) - len(tail)) + tail


async def test_message_at_the_limit_is_accepted(srv):
    async with connect(srv.url()) as ws:
        await ws.send(big_broadcast(MAX_MESSAGE))
        assert await recv(ws) == {"broadcasted": "calm"}


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_oversized_message_closes_1009(srv, compression):
    async with bystander(srv):
        async with connect(srv.url(), compression=compression) as ws:
            await ws.send(big_broadcast(MAX_MESSAGE + 1))
            await expect_close(ws, 1009)


async def test_oversized_fragmented_message_closes_1009(srv):
    # Every frame is small; only the whole message is too big.
    async with bystander(srv):
        async with connect(srv.url(), compression=None) as ws:
            text = big_broadcast(3 * MAX_MESSAGE)
            await ws.send([text[i : i + 4096] for i in range(0, len(text), 4096)])
            await expect_close(ws, 1009)


async def test_oversized_frame_header_closes_1009_without_payload(srv):
    # A frame that declares 1 GiB: the server must not wait for (or buffer) it.
    async with bystander(srv):
        raw = RawWebSocket.connect(srv.websocket_addr, "/chat")
        raw.send_frame(OP_TEXT, b"", declared_len=1 << 30)
        raw_expect_close(raw, 1009)


# ---------------------------------------------------------------------------
# UTF-8: close 1007
# ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "data",
    [b'{"subscribe": {"channel": "\xff"}}', b"\xed\xa0\x80", b"\xc0\xaf", b"abc\xe2\x82"],
    ids=["ff", "surrogate", "overlong", "truncated"],
)
async def test_invalid_utf8_text_frame_closes_1007(srv, data):
    async with bystander(srv):
        async with connect(srv.url(), compression=None) as ws:
            await ws.send(data, text=True)
            await expect_close(ws, 1007)


async def test_invalid_utf8_across_fragments_closes_1007(srv):
    async with bystander(srv):
        raw = RawWebSocket.connect(srv.websocket_addr, "/chat")
        raw.send_frame(OP_TEXT, b'{"x": "\xe2\x82', fin=False)
        raw.send_frame(OP_CONT, b'("}', fin=True)
        raw_expect_close(raw, 1007)


async def test_valid_utf8_split_across_fragments_is_fine(srv):
    raw = RawWebSocket.connect(srv.websocket_addr, "/chat")
    try:
        msg = json.dumps({"broadcast": {"event": "✓", "channel": "calm"}}, ensure_ascii=False).encode()
        cut = msg.index("✓".encode()) + 1  # inside the 3-byte character
        raw.send_frame(OP_TEXT, msg[:cut], fin=False)
        raw.send_frame(OP_CONT, msg[cut:], fin=True)
        assert raw.read_json() == {"broadcasted": "calm"}
    finally:
        raw.close()


# ---------------------------------------------------------------------------
# WebSocket protocol violations: close 1002
# ---------------------------------------------------------------------------

def violation_unmasked(raw):
    raw.send_frame(OP_TEXT, b'{"subscribe": {"channel": "calm"}}', mask=False)


def violation_reserved_opcode(raw):
    raw.send_frame(0x3, b"x")


def violation_reserved_control_opcode(raw):
    raw.send_frame(0xB, b"")


def violation_rsv_bits(raw):
    raw.send_frame(OP_TEXT, b"{}", rsv=0b010)


def violation_fragmented_ping(raw):
    raw.send_frame(OP_PING, b"x", fin=False)


def violation_long_ping(raw):
    raw.send_frame(OP_PING, b"p" * 126)


def violation_lone_continuation(raw):
    raw.send_frame(OP_CONT, b"x")


def violation_new_message_inside_fragmented(raw):
    raw.send_frame(OP_TEXT, b'{"a"', fin=False)
    raw.send_frame(OP_BINARY, b"{}")


def violation_close_code_999(raw):
    raw.send_frame(OP_CLOSE, struct.pack("!H", 999))


def violation_close_one_byte(raw):
    raw.send_frame(OP_CLOSE, b"\x03")


@pytest.mark.parametrize(
    "violate",
    [
        violation_unmasked,
        violation_reserved_opcode,
        violation_reserved_control_opcode,
        violation_rsv_bits,
        violation_fragmented_ping,
        violation_long_ping,
        violation_lone_continuation,
        violation_new_message_inside_fragmented,
        violation_close_code_999,
        violation_close_one_byte,
    ],
    ids=lambda f: f.__name__.removeprefix("violation_"),
)
async def test_protocol_violation_closes_1002(srv, violate):
    async with bystander(srv):
        raw = RawWebSocket.connect(srv.websocket_addr, "/chat")
        violate(raw)
        raw_expect_close(raw, 1002)


async def test_client_close_is_echoed(srv):
    raw = RawWebSocket.connect(srv.websocket_addr, "/chat")
    raw.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
    raw_expect_close(raw, 1000)


# ---------------------------------------------------------------------------
# HTTP upgrade
# ---------------------------------------------------------------------------

def http_exchange(srv: Server, request: bytes) -> tuple[int, dict[str, str]]:
    sock = open_tcp(srv.websocket_addr)
    try:
        sock.sendall(request)
        status, headers, _ = read_http_response(sock)
        return status, headers
    finally:
        sock.close()


async def test_plain_http_get_is_refused(srv):
    async with bystander(srv):
        status, _ = http_exchange(srv, b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n")
        assert 400 <= status < 500, status


async def test_unsupported_websocket_version_is_refused(srv):
    request, _ = upgrade_request("/chat")
    status, headers = http_exchange(srv, request.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"))
    assert 400 <= status < 500, status
    if status == 426:
        assert "13" in headers.get("sec-websocket-version", ""), headers


async def test_oversized_handshake_is_http_431(srv):
    async with bystander(srv):
        request, _ = upgrade_request("/chat", extra="X-Padding: " + "p" * 9000 + "\r\n")
        status, _ = http_exchange(srv, request)
        assert status == 431


async def test_garbage_instead_of_http_is_dropped(srv):
    async with bystander(srv):
        sock = open_tcp(srv.websocket_addr)
        try:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100 + b"\r\n\r\n")
            sock.settimeout(5)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            # Either a 400 or a bare close; never a hang (the timeout fails).
            assert data == b"" or data.startswith(b"HTTP/1.1 4"), data[:100]
        except ConnectionResetError:
            pass
        finally:
            sock.close()


async def expect_http_status(url: str, status: int) -> None:
    """Opening `url` is refused with HTTP `status` before the upgrade."""
    try:
        async with connect(url) as ws:
            pytest.fail(f"expected HTTP {status}, but the upgrade succeeded ({ws.response.status_code})")
    except websockets.exceptions.InvalidStatus as e:
        assert e.response.status_code == status, f"expected HTTP {status}, got {e.response.status_code}"
    except (websockets.exceptions.InvalidMessage, OSError) as e:
        pytest.fail(f"expected HTTP {status}, got no HTTP response: {e!r} (cause {e.__cause__!r})")


# ---------------------------------------------------------------------------
# Per-connection and per-vhost limits (each on its own server)
# ---------------------------------------------------------------------------

async def test_connections_per_vhost_limit_is_http_503(server_factory):
    srv2 = server_factory(
        render_config(
            [vhost("/a", anonymous=["READ"]), vhost("/b", anonymous=["READ"])],
            limits={"max_connections_per_vhost": 2},
        )
    )
    async with connect(srv2.url("/a")) as a1, connect(srv2.url("/a")) as a2:
        await expect_http_status(srv2.url("/a"), 503)
        # The limit is per vhost: /b still has room.
        async with connect(srv2.url("/b")) as b1:
            await ping_pong(b1)
        await ping_pong(a1)
        await ping_pong(a2)
    # The slots are given back when sessions end.
    deadline = time.monotonic() + 5
    while True:
        try:
            async with connect(srv2.url("/a")) as a3, connect(srv2.url("/a")) as a4:
                await ping_pong(a3)
                await ping_pong(a4)
            break
        except websockets.exceptions.InvalidStatus:
            assert time.monotonic() < deadline, "slots were not released after the sessions closed"
            await asyncio.sleep(0.1)


async def test_connections_per_node_limit_is_http_503(server_factory):
    srv2 = server_factory(
        render_config([vhost("/a", anonymous=["READ"]), vhost("/b", anonymous=["READ"])], limits={"max_connections": 2})
    )
    async with connect(srv2.url("/a")) as a1, connect(srv2.url("/b")) as b1:
        for path in ("/a", "/b"):
            await expect_http_status(srv2.url(path), 503)
        await ping_pong(a1)
        await ping_pong(b1)


async def test_subscriptions_per_session_limit(server_factory):
    srv2 = server_factory(
        render_config([vhost("/a", anonymous=["READ", "WRITE"])], limits={"max_subscriptions_per_session": 3})
    )
    async with connect(srv2.url("/a")) as ws, connect(srv2.url("/a")) as pub:
        for ch in ("s1", "s2", "s3"):
            assert await request(ws, "subscribe", {"channel": ch}) == {"subscribed": ch}
        # Re-subscribing is not a new subscription.
        assert await request(ws, "subscribe", {"channel": "s1"}) == {"subscribed": "s1"}
        reply = await request(ws, "subscribe", {"channel": "s4"})
        assert "err" in reply and isinstance(reply.get("message"), str), reply
        assert reply.get("event") == "subscribe", reply
        # A clear error, not a close; after an unsubscribe there is room again.
        assert await request(ws, "unsubscribe", {"channel": "s3"}) == {"unsubscribed": "s3"}
        assert await request(ws, "subscribe", {"channel": "s4"}) == {"subscribed": "s4"}
        assert await request(pub, "broadcast", {"event": "e", "channel": "s3"}) == {"broadcasted": "s3"}
        await expect_silence(ws)


async def test_idle_session_is_closed(server_factory):
    srv2 = server_factory(render_config([vhost("/a", anonymous=["READ"])], limits={"idle_timeout": "1s"}))
    async with connect(srv2.url("/a")) as idle, connect(srv2.url("/a")) as busy:
        start = time.monotonic()

        async def keep_busy():
            while time.monotonic() - start < 2.5:
                await ping_pong(busy)
                await asyncio.sleep(0.3)

        async def wait_idle_close():
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(idle.recv(), 5)
            assert info.value.rcvd is not None, "idle session dropped without a close frame"
            return time.monotonic() - start

        closed_after, _ = await asyncio.gather(wait_idle_close(), keep_busy())
        assert 0.8 <= closed_after <= 3.5, closed_after
        # The busy session was never idle, so it is still open.
        await ping_pong(busy)


async def test_handshake_timeout_drops_silent_tcp(server_factory):
    srv2 = server_factory(render_config([vhost("/a")], limits={"handshake_timeout": "1s"}))
    sock = open_tcp(srv2.websocket_addr, timeout=5)
    start = time.monotonic()
    try:
        # Whatever the server says (maybe an HTTP 408), the connection ends.
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail("a connection that sent nothing was kept past the handshake timeout")
    finally:
        sock.close()
    assert time.monotonic() - start < 4
    async with connect(srv2.url("/a")) as ws:
        await ping_pong(ws)
