"""Durable state: channels created by clients survive a clean restart and a
kill -9. The restarts use a config with auto-creation off, so a lost channel
shows as CHANNEL_NOT_FOUND instead of being silently re-created."""

from __future__ import annotations

import asyncio
import json

import pytest

from conftest import (
    SECRETS,
    ConnectionClosed,
    assert_error,
    connect,
    login,
    recv,
    render_config,
    request,
    send,
    user,
    vhost,
)


def config(auto_create: bool) -> str:
    return render_config(
        [
            vhost(
                "/chat",
                anonymous=[],
                auto_create_channels=auto_create,
                channels=["declared"],
                users=[
                    user("reader", ["READ"], SECRETS["reader"]),
                    user("writer", ["WRITE"], SECRETS["writer"]),
                ],
            )
        ]
    )


async def broadcast_all(url: str, channels: list[str]) -> list[dict]:
    """The replies to one broadcast per channel (pipelined; replies are in
    request order)."""
    async with connect(url) as ws:
        await login(ws, "writer")
        for ch in channels:
            await send(ws, "broadcast", {"event": "probe", "channel": ch})
        return [await recv(ws, 15) for _ in channels]


async def test_auto_created_channels_survive_restart(server_factory):
    srv = server_factory(config(auto_create=True))
    created = [f"persist-{i}" for i in range(5)]
    async with connect(srv.url()) as ws:
        await login(ws, "reader")
        for ch in created:
            assert await request(ws, "subscribe", {"channel": ch}) == {"subscribed": ch}

    srv.restart(config(auto_create=False))

    replies = await broadcast_all(srv.url(), created + ["declared", "never-created"])
    assert replies[:-1] == [{"broadcasted": ch} for ch in created + ["declared"]]
    # The control: auto-creation is really off and broadcast creates nothing.
    assert_error(replies[-1], "CHANNEL_NOT_FOUND", event="broadcast", channel="never-created")
    # A READ user may subscribe to the surviving channels, not to new ones.
    async with connect(srv.url()) as ws:
        await login(ws, "reader")
        assert await request(ws, "subscribe", {"channel": created[0]}) == {"subscribed": created[0]}
        reply = await request(ws, "subscribe", {"channel": "brand-new"})
        assert_error(reply, "CHANNEL_NOT_FOUND", event="subscribe", channel="brand-new")

    # And once more: state written by a restarted server survives too.
    srv.restart(config(auto_create=False))
    replies = await broadcast_all(srv.url(), created)
    assert replies == [{"broadcasted": ch} for ch in created]


KILL_AFTER = 150  # acknowledgements before the SIGKILL
WINDOW = 16  # subscribes in flight at once
TOTAL = 5000  # more than will be sent before the kill


@pytest.mark.timeout(60)
async def test_acknowledged_channels_survive_kill_9(server_factory):
    srv = server_factory(config(auto_create=True))
    acked: list[str] = []
    sent = 0
    async with connect(srv.url(), compression=None) as ws:
        await login(ws, "reader")
        # Keep WINDOW subscribes in flight so the kill lands while the server
        # is committing some of them; each acknowledgement names its channel.
        while sent < WINDOW:
            await send(ws, "subscribe", {"channel": f"c{sent}"})
            sent += 1
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), 10)
                reply = json.loads(raw)
                assert reply == {"subscribed": f"c{len(acked)}"}, reply
                acked.append(reply["subscribed"])
                if len(acked) == KILL_AFTER:
                    srv.kill()
                if sent < TOTAL:
                    await send(ws, "subscribe", {"channel": f"c{sent}"})
                    sent += 1
        except ConnectionClosed:
            pass
    assert not srv.alive
    assert len(acked) >= KILL_AFTER, acked[-5:]
    assert sent > len(acked), "the kill did not land mid-burst"

    srv.start(config(auto_create=False))
    replies = await broadcast_all(srv.url(), acked)
    lost = [ch for ch, r in zip(acked, replies) if r != {"broadcasted": ch}]
    assert not lost, f"{len(lost)} acknowledged channels lost after kill -9, e.g. {lost[:10]}: {replies[acked.index(lost[0])]}"
    # Unacknowledged ones may or may not exist; the server must answer either way.
    tail = [f"c{i}" for i in range(len(acked), sent)]
    for ch, reply in zip(tail, await broadcast_all(srv.url(), tail)):
        assert reply == {"broadcasted": ch} or reply.get("err") == "CHANNEL_NOT_FOUND", reply
