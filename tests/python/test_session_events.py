"""Session events for backends over ZeroMQ, with pyzmq: a worker that sends
`RD events` gets `SE` for every session opened, authenticated and closed
(with the close reason), and `KS` closes a session with a code and reason
of the backend's choosing."""

from __future__ import annotations

import asyncio
import json

import pytest
import zmq
from backend_fixtures import HEARTBEAT, backend_config, backend_endpoint, vhost_token, webrocket_backend
from conftest import SECRETS, connect, request

websockets = pytest.importorskip("websockets")


def dealer_for(srv, vhost: str) -> zmq.Socket:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, webrocket_backend.identity("dlr", vhost, vhost_token(srv, vhost)))
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(backend_endpoint(srv))
    return dealer


async def next_event(dealer: zmq.Socket, timeout: float = 5.0, others: list | None = None) -> dict:
    """The next SE payload, answering heartbeats; other frames (OK, ER)
    go to `others`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if dealer.poll(10):
            frames = dealer.recv_multipart()
            if frames[1] == b"SE":
                return json.loads(frames[2])
            if frames[1] == b"HB":
                dealer.send_multipart([b"", b"HB"])
            elif others is not None:
                others.append(frames[1:])
        else:
            await asyncio.sleep(0.01)
    raise AssertionError("no session event")


async def test_a_worker_hears_sessions_open_authenticate_and_close(server_factory):
    srv = server_factory(backend_config())
    listener = dealer_for(srv, "/chat")
    plain = dealer_for(srv, "/chat")
    try:
        listener.send_multipart([b"", b"RD", b"events"])
        plain.send_multipart([b"", b"RD"])
        await asyncio.sleep(HEARTBEAT * 3)
        async with connect(srv.url("/chat")) as ws:
            opened = await next_event(listener)
            sid = opened["opened"]["sid"]
            assert opened == {"opened": {"sid": sid, "user": None}}
            reply = await request(ws, "authenticate", {"user": "alice", "secret": SECRETS["alice"]})
            assert reply == {"authenticated": "alice"}
            assert await next_event(listener) == {"authenticated": {"sid": sid, "user": "alice"}}
        closed = await next_event(listener)
        assert closed == {"closed": {"sid": sid, "user": "alice", "reason": "client_closed", "code": 1000}}
        # A worker that did not ask hears nothing of it.
        while plain.poll(50):
            assert plain.recv_multipart()[1] != b"SE"
    finally:
        listener.close(0)
        plain.close(0)


async def test_ks_closes_a_session_with_the_backends_code_and_reason(server_factory):
    srv = server_factory(backend_config())
    listener = dealer_for(srv, "/chat")
    try:
        listener.send_multipart([b"", b"RD", b"events"])
        await asyncio.sleep(HEARTBEAT * 3)
        async with connect(srv.url("/chat")) as ws:
            sid = (await next_event(listener))["opened"]["sid"]
            listener.send_multipart([b"", b"KS", sid.encode(), b"4001", b"kicked"])
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5.0)
            assert closed.value.rcvd.code == 4001 and closed.value.rcvd.reason == "kicked"
        replies: list = []
        assert await next_event(listener, others=replies) == {
            "closed": {"sid": sid, "user": None, "reason": "backend", "code": 4001}
        }
        # Replies: OK for the close; unknown session 404; a code outside
        # 4000-4999 is a bad request (answered at once, so maybe first).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        listener.send_multipart([b"", b"KS", sid.encode(), b"4001", b"again"])
        listener.send_multipart([b"", b"KS", sid.encode(), b"1000", b"no"])
        while len(replies) < 3 and loop.time() < deadline:
            if listener.poll(10):
                frames = listener.recv_multipart()
                if frames[1] in (b"OK", b"ER"):
                    replies.append(frames[1:])
            else:
                await asyncio.sleep(0.01)
        assert replies[0] == [b"OK"], replies
        assert sorted(replies[1:]) == [[b"ER", b"400"], [b"ER", b"404"]], replies
    finally:
        listener.close(0)


async def test_a_worker_hears_the_sessions_of_every_node(server_factory):
    from test_cluster import until
    from test_history_presence import start_cluster

    n0, n1, _ = start_cluster(server_factory)
    listener = dealer_for(n1, "/hist")
    try:
        listener.send_multipart([b"", b"RD", b"events"])
        heard: list = []

        async def heard_from_n0() -> bool:
            async with connect(n0.url("/hist")):
                pass
            try:
                event = await next_event(listener, timeout=1.0)
            except AssertionError:
                return False
            heard.append(event)
            return True

        assert await until(heard_from_n0), "the worker on n1 never heard of a session on n0"
        assert "opened" in heard[0] or "closed" in heard[0], heard
    finally:
        listener.close(0)


async def test_ks_finds_a_session_on_another_node(server_factory):
    from test_cluster import until
    from test_history_presence import start_cluster

    n0, n1, _ = start_cluster(server_factory)
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.IDENTITY, webrocket_backend.identity("req", "/hist", vhost_token(n1, "/hist")))
    req.setsockopt(zmq.LINGER, 0)
    req.connect(backend_endpoint(n1))
    try:
        # The session's id comes from an SE listener on n0.
        listener = dealer_for(n0, "/hist")
        try:
            listener.send_multipart([b"", b"RD", b"events"])
            await asyncio.sleep(0.2)
            async with connect(n0.url("/hist")) as target:
                sid = (await next_event(listener))["opened"]["sid"]

                async def closed_from_n1() -> bool:
                    req.send_multipart([b"KS", sid.encode(), b"4002", b"moved"])
                    assert req.poll(5000), "no reply"
                    return req.recv_multipart() == [b"OK"]

                assert await until(closed_from_n1), "n1 never found the session on n0"
                with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                    await asyncio.wait_for(target.recv(), 5.0)
                assert closed.value.rcvd.code == 4002 and closed.value.rcvd.reason == "moved"
        finally:
            listener.close(0)
    finally:
        req.close(0)
