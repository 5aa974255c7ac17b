"""Fan-out: many subscribers get every broadcast in order, and one stalled
subscriber is dropped as a slow consumer without holding back the others."""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import socket
import time

import pytest

from conftest import connect, ping_pong, recv, render_config, send, vhost
from rawws import Closed, OP_BINARY, OP_CLOSE, OP_TEXT, RawWebSocket

SUBSCRIBERS = 1000
BATCH = 100
BROADCASTS = 50


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")


@pytest.mark.timeout(100)
async def test_thousand_subscribers_receive_every_broadcast_in_order(server_factory):
    raise_nofile(SUBSCRIBERS + 512)
    srv = server_factory(render_config([vhost("/fan", anonymous=["READ", "WRITE"], channels=["fan"])]))
    url = srv.url("/fan")

    async def subscriber():
        ws = await connect(url, compression=None, open_timeout=30)
        await send(ws, "subscribe", {"channel": "fan"})
        assert await recv(ws, 30) == {"subscribed": "fan"}
        return ws

    subs = []
    try:
        for _ in range(0, SUBSCRIBERS, BATCH):
            subs += await asyncio.gather(*(subscriber() for _ in range(BATCH)))
        assert len(subs) == SUBSCRIBERS

        async with connect(url, compression=None) as pub:
            for seq in range(BROADCASTS):
                await send(pub, "broadcast", {"event": "tick", "channel": "fan", "data": {"seq": seq}})
            for _ in range(BROADCASTS):
                assert await recv(pub, 30) == {"broadcasted": "fan"}

            async def collect(ws):
                return [await recv(ws, 30) for _ in range(BROADCASTS)]

            results = await asyncio.gather(*(collect(ws) for ws in subs))
            expected = [{"tick": {"channel": "fan", "data": {"seq": s}, "user": None}} for s in range(BROADCASTS)]
            bad = [i for i, got in enumerate(results) if got != expected]
            assert not bad, f"{len(bad)} subscribers saw a wrong sequence, e.g. #{bad[0]}: {results[bad[0]][:5]}"
            await ping_pong(pub)
    finally:
        await asyncio.gather(*(asyncio.wait_for(ws.close(), 10) for ws in subs), return_exceptions=True)


SLOW_MESSAGES = 120
SLOW_PAYLOAD = 60_000  # characters of data per broadcast (max_message_size is 64KiB)


@pytest.mark.timeout(60)
async def test_stalled_subscriber_is_dropped_others_keep_up(server_factory):
    srv = server_factory(
        render_config(
            [vhost("/slow", anonymous=["READ", "WRITE"], channels=["slow"])],
            limits={"max_pending_bytes": "128KiB", "max_message_size": "64KiB"},
        )
    )
    url = srv.url("/slow")

    # The stalled client: completes the upgrade, subscribes, then never reads,
    # with a tiny receive buffer so the server's queue for it fills quickly.
    raw = RawWebSocket.connect(srv.websocket_addr, "/slow", rcvbuf=4096)
    raw.send_json({"subscribe": {"channel": "slow"}})
    assert raw.read_json() == {"subscribed": "slow"}

    payloads = [base64.b64encode(os.urandom(SLOW_PAYLOAD * 3 // 4)).decode() for _ in range(SLOW_MESSAGES)]
    async with connect(url, compression=None) as normal, connect(url, compression=None) as pub:
        await send(normal, "subscribe", {"channel": "slow"})
        assert await recv(normal) == {"subscribed": "slow"}

        acked_at: dict[int, float] = {}
        received_at: dict[int, float] = {}

        async def publish():
            for seq, text in enumerate(payloads):
                await send(pub, "broadcast", {"event": "big", "channel": "slow", "data": [seq, text]})
                assert await recv(pub, 10) == {"broadcasted": "slow"}
                acked_at[seq] = time.monotonic()

        async def consume():
            for seq in range(SLOW_MESSAGES):
                msg = await recv(normal, 10)
                assert msg == {"big": {"channel": "slow", "data": [seq, payloads[seq]], "user": None}}, (
                    f"delivery {seq} wrong or out of order: {str(msg)[:200]}"
                )
                received_at[seq] = time.monotonic()

        start = time.monotonic()
        await asyncio.gather(publish(), consume())
        elapsed = time.monotonic() - start
        assert elapsed < 30, f"fan-out took {elapsed:.1f}s"
        lag = max(received_at[s] - acked_at[s] for s in range(SLOW_MESSAGES))
        assert lag < 3.0, f"the normal subscriber lagged {lag:.1f}s behind the publisher"
        await ping_pong(normal)

    # Now read what the server left for the stalled client: it must end (EOF
    # or reset) before all the deliveries, because the server dropped it.
    deliveries = 0
    close_code = None
    raw.sock.settimeout(10)
    try:
        while True:
            opcode, payload = raw.read_message()
            if opcode == OP_CLOSE:
                close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                break
            assert opcode in (OP_TEXT, OP_BINARY)
            deliveries += 1
        # After a close frame, the TCP connection must end too.
        while raw.read_frame():
            pass
    except Closed:
        pass
    except socket.timeout:
        pytest.fail(
            f"the stalled subscriber was not disconnected: read {deliveries} of {SLOW_MESSAGES} "
            f"deliveries and then the connection stayed open"
        )
    finally:
        raw.close()
    assert deliveries < SLOW_MESSAGES, "the stalled subscriber got every delivery: it was never dropped"
    if close_code is not None:
        assert close_code == 1008, f"slow consumer closed with {close_code}, expected 1008"
