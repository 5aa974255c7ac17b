"""The backend protocol (spec section 2) with pyzmq (libzmq) workers and
request clients, and the library in backend/python: round-robin triggers,
worker expiry, rejoining a restarted server, DS and BC delivery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
import zmq

from backend_fixtures import (
    HEARTBEAT,
    LIVENESS,
    backend_config,
    backend_endpoint,
    free_port,
    start_with_backend_port,
    vhost_token,
    webrocket_backend,
)
from conftest import REPO, assert_error, connect, expect_silence, recv, request, send

Worker = webrocket_backend.Worker
Client = webrocket_backend.Client
BackendError = webrocket_backend.BackendError

EXAMPLE = REPO / "backend" / "python" / "example_worker.py"
# Long enough for a silent worker to be dropped, with margin.
EXPIRY = HEARTBEAT * (LIVENESS + 1) + 0.5


class Counting:
    """A worker that counts its triggers (thread-safe enough: one writer)."""

    def __init__(self, endpoint: str, vhost: str, token: str):
        self.count = 0
        self.seen: list = []
        self.worker = Worker(endpoint, vhost, token, heartbeat_interval=HEARTBEAT, liveness=LIVENESS)
        self.worker.default_handler = self._handle

    def _handle(self, trigger) -> None:
        self.count += 1
        self.seen.append(trigger)

    def start(self) -> "Counting":
        self.worker.start()
        return self

    def stop(self, quit: bool = True) -> None:
        self.worker.stop(quit=quit)


@pytest.fixture
def backend_server(server_factory):
    return server_factory(backend_config())


@pytest.fixture
def workers():
    started: list[Counting] = []
    yield started
    for w in started:
        w.stop()


def make_workers(srv, vhost: str, n: int, started: list) -> list[Counting]:
    token = vhost_token(srv, vhost)
    made = [Counting(backend_endpoint(srv), vhost, token).start() for _ in range(n)]
    started.extend(made)
    return made


async def trigger_until_taken(ws, event: str = "probe", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reply = await request(ws, "trigger", {"event": event})
        if reply == {"triggered": event}:
            return
        assert reply.get("err") == "ASSIGNATION_FAILED", reply
        if time.monotonic() > deadline:
            pytest.fail(f"no worker took a trigger within {timeout}s")
        await asyncio.sleep(0.05)


async def trigger_n(ws, n: int, event: str = "tick") -> None:
    for i in range(n):
        await send(ws, "trigger", {"event": event, "data": i})
    for _ in range(n):
        assert await recv(ws) == {"triggered": event}


async def wait_counts(ws_workers: list[Counting], total: int, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while sum(w.count for w in ws_workers) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return [w.count for w in ws_workers]


def reset(ws_workers: list[Counting]) -> None:
    for w in ws_workers:
        w.count = 0


async def test_triggers_spread_evenly_over_three_workers(backend_server, workers):
    three = make_workers(backend_server, "/anon", 3, workers)
    async with connect(backend_server.url("/anon")) as ws:
        await trigger_until_taken(ws)
        await asyncio.sleep(0.3)  # every worker's RD is in
        reset(three)
        await trigger_n(ws, 300)
        counts = await wait_counts(three, 300)
    assert counts == [100, 100, 100]
    # The TR payload shape of section 2.
    trigger = three[0].seen[-1]
    assert trigger.event == "tick" and isinstance(trigger.data, int)
    assert len(trigger.sid) == 32 and trigger.user is None
    # The session id the client was greeted with is the one workers see.
    assert trigger.sid == ws.sid


async def test_a_killed_worker_expires_and_its_share_moves(backend_server, workers):
    two = make_workers(backend_server, "/anon", 2, workers)
    token = vhost_token(backend_server, "/anon")
    victim = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--endpoint", backend_endpoint(backend_server), "--vhost", "/anon",
         "--token", token, "--heartbeat", str(HEARTBEAT), "--liveness", str(LIVENESS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async with connect(backend_server.url("/anon")) as ws:
            await trigger_until_taken(ws)
            await asyncio.sleep(1.0)  # the subprocess's RD is in
            reset(two)
            await trigger_n(ws, 90)
            counts = await wait_counts(two, 60)
            await asyncio.sleep(0.2)
            assert [w.count for w in two] == [30, 30], "three workers share the triggers"
            victim.send_signal(signal.SIGKILL)
            victim.wait(5)
            await asyncio.sleep(EXPIRY)
            reset(two)
            await trigger_n(ws, 100)
            counts = await wait_counts(two, 100)
        assert counts == [50, 50]
    finally:
        if victim.poll() is None:
            victim.kill()


async def _rejoin_after(restart, server_factory, workers):
    srv = server_factory(backend_config(), start=False)
    port = free_port()
    start_with_backend_port(srv, port)
    two = make_workers(srv, "/anon", 2, workers)
    async with connect(srv.url("/anon")) as ws:
        await trigger_until_taken(ws)
    restart(srv)
    start_with_backend_port(srv, port)
    async with connect(srv.url("/anon")) as ws:
        await trigger_until_taken(ws, timeout=15)
        # Both rejoined on their own: the triggers are shared again.
        deadline = time.monotonic() + 10
        while True:
            reset(two)
            await trigger_n(ws, 20)
            counts = await wait_counts(two, 20)
            if counts == [10, 10] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert counts == [10, 10]
    assert all(w.worker.connects >= 2 for w in two)


async def test_workers_rejoin_a_killed_and_restarted_server(server_factory, workers):
    await _rejoin_after(lambda srv: srv.kill(), server_factory, workers)


async def test_workers_rejoin_a_stopped_and_restarted_server(server_factory, workers):
    # SIGTERM: the server says QT to its workers before it goes.
    await _rejoin_after(lambda srv: srv.stop(), server_factory, workers)


async def test_ds_reaches_exactly_the_right_session(backend_server, workers):
    endpoint = backend_endpoint(backend_server)
    token = vhost_token(backend_server, "/anon")
    worker = Worker(endpoint, "/anon", token, heartbeat_interval=HEARTBEAT, liveness=LIVENESS)

    @worker.on("whoami")
    def whoami(trigger):
        worker.client.direct(trigger.sid, "you", {"sid": trigger.sid, "asked": trigger.data})

    worker.start()
    try:
        async with connect(backend_server.url("/anon")) as a, connect(backend_server.url("/anon")) as b:
            await trigger_until_taken(a, "noop")
            for ws, name in ((a, "a"), (b, "b"), (a, "a2")):
                assert await request(ws, "trigger", {"event": "whoami", "data": name}) == {"triggered": "whoami"}
                reply = await recv(ws)
                assert reply["you"]["asked"] == name
                assert len(reply["you"]["sid"]) == 32
            await send(a, "trigger", {"event": "whoami", "data": "again"})
            assert await recv(a) == {"triggered": "whoami"}
            sid_a = (await recv(a))["you"]["sid"]
            await expect_silence(b)
        client = Client(endpoint, "/anon", token)
        try:
            # That session has gone: 404.
            with pytest.raises(BackendError) as error:
                client.direct(sid_a, "late", 1)
            assert error.value.code == 404
            with pytest.raises(BackendError) as error:
                client.direct("0" * 32, "nobody", 1)
            assert error.value.code == 404
        finally:
            client.close()
    finally:
        worker.stop()


async def test_ds_does_not_cross_vhosts(backend_server, workers):
    endpoint = backend_endpoint(backend_server)
    anon = Worker(endpoint, "/anon", vhost_token(backend_server, "/anon"), heartbeat_interval=HEARTBEAT)
    sids: list[str] = []
    anon.default_handler = lambda t: sids.append(t.sid)
    anon.start()
    try:
        async with connect(backend_server.url("/anon")) as ws:
            await trigger_until_taken(ws)
            deadline = time.monotonic() + 5
            while not sids and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            other = Client(endpoint, "/chat", vhost_token(backend_server, "/chat"))
            try:
                with pytest.raises(BackendError) as error:
                    other.direct(sids[0], "sneak", 1)
                assert error.value.code == 404
            finally:
                other.close()
            await expect_silence(ws)
    finally:
        anon.stop()


async def test_bc_reaches_every_subscriber(backend_server):
    endpoint = backend_endpoint(backend_server)
    client = Client(endpoint, "/anon", vhost_token(backend_server, "/anon"))
    sockets = [await connect(backend_server.url("/anon")).__aenter__() for _ in range(5)]
    try:
        for ws in sockets:
            assert await request(ws, "subscribe", {"channel": "bc-room"}) == {"subscribed": "bc-room"}
        client.broadcast("bc-room", "news", {"n": 1})
        for ws in sockets:
            assert await recv(ws) == {"news": {"channel": "bc-room", "data": {"n": 1}, "user": None}}
        client.close_channel("bc-room")
        for ws in sockets:
            assert await recv(ws) == {"unsubscribed": "bc-room"}
        with pytest.raises(BackendError) as error:
            client.broadcast("bc-room", "news", 2)
        assert error.value.code == 454
        with pytest.raises(BackendError) as error:
            client.broadcast("bad room", "news", 2)
        assert error.value.code == 451
        client.open_channel("bc-room")
        client.open_channel("bc-room")  # opening twice is fine
        client.broadcast("bc-room", "news", None)  # nobody subscribed: still OK
        for ws in sockets:
            await expect_silence(ws, 0.1)
    finally:
        client.close()
        for ws in sockets:
            await ws.close()


async def test_assignation_failed_without_workers(backend_server):
    async with connect(backend_server.url("/anon")) as ws:
        reply = await request(ws, "trigger", {"event": "nobody-home", "data": 1})
        assert_error(reply, "ASSIGNATION_FAILED", event="trigger")


def test_bad_identity_gets_er_402_with_libzmq(backend_server):
    ctx = zmq.Context.instance()
    endpoint = backend_endpoint(backend_server)
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, webrocket_backend.identity("dlr", "/anon", "0" * 40))
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.IDENTITY, b"req:/anon:nonsense:x")
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    try:
        dealer.send_multipart([b"", b"RD"])
        assert dealer.poll(5000), "no reply"
        assert dealer.recv_multipart() == [b"", b"ER", b"402"]
        req.send_multipart([b"OC", b"x"])
        assert req.poll(5000), "no reply"
        assert req.recv_multipart() == [b"ER", b"402"]
        # Nothing else comes: the worker did not join.
        assert not dealer.poll(int(HEARTBEAT * 3000))
    finally:
        dealer.close(0)
        req.close(0)


def test_malformed_frames_with_libzmq(backend_server):
    ctx = zmq.Context.instance()
    token = vhost_token(backend_server, "/anon")
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.IDENTITY, webrocket_backend.identity("req", "/anon", token))
    req.setsockopt(zmq.LINGER, 0)
    req.connect(backend_endpoint(backend_server))
    try:
        cases = [
            ([b"ZZ"], b"400"),
            ([b"HB"], b"400"),
            ([b"BC", b"a", b"b", b"{"], b"400"),
            ([b"OC"], b"400"),
            ([b"OC", b"no spaces"], b"451"),
            ([b"DS", b"short", b"e", b"1"], b"404"),
        ]
        for frames, code in cases:
            req.send_multipart(frames)
            assert req.poll(5000), f"no reply to {frames}"
            assert req.recv_multipart() == [b"ER", code], frames
        req.send_multipart([b"OC", b"still-fine"])
        assert req.poll(5000)
        assert req.recv_multipart() == [b"OK"]
    finally:
        req.close(0)


async def test_example_worker_answers_with_ds_and_bc(backend_server):
    token = vhost_token(backend_server, "/anon")
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--endpoint", backend_endpoint(backend_server), "--vhost", "/anon",
         "--token", token, "--heartbeat", str(HEARTBEAT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        async with connect(backend_server.url("/anon")) as sender, connect(backend_server.url("/anon")) as listener:
            assert await request(listener, "subscribe", {"channel": "room"}) == {"subscribed": "room"}
            deadline = time.monotonic() + 10
            while True:
                reply = await request(sender, "trigger", {"event": "say", "data": {"channel": "room", "text": "hi"}})
                if reply == {"triggered": "say"}:
                    break
                assert reply.get("err") == "ASSIGNATION_FAILED"
                assert time.monotonic() < deadline, "example worker never joined"
                await asyncio.sleep(0.1)
            assert await recv(sender) == {"said": {"text": "hi"}}
            message = await recv(listener)
            assert message["message"]["channel"] == "room"
            assert message["message"]["data"]["text"] == "hi"
            assert len(message["message"]["data"]["from"]) == 32  # the sender's sid (anonymous)
            assert message["message"]["user"] is None
            await expect_silence(sender)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()

