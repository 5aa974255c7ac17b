"""History, recovery and presence, single node and three-node cluster,
with `websockets` clients only.

A vhost with `history_size` numbers each delivery (`offset`, `epoch`); a
client that reconnects with `subscribe` + `since` gets exactly what it
missed, then live messages. A vhost with `presence` lists members and
tells subscribers who joins and leaves, on every node."""

from __future__ import annotations

import asyncio
import json

from backend_fixtures import free_port
from conftest import connect, expect_silence, recv, recv_n, render_config, request, send, vhost
from test_cluster import COOKIE, until


def with_options(text: str, path: str, options: str) -> str:
    """Adds vhost keys (history_size, presence ...) under `path`."""
    marker = f'path = "{path}"\n'
    assert marker in text
    return text.replace(marker, marker + options + "\n")


def single_config() -> str:
    text = render_config(
        [
            vhost("/hist", anonymous=["READ", "WRITE"], channels=["room"]),
            vhost("/pres", anonymous=["READ", "WRITE"], channels=["room"]),
            vhost("/plain", anonymous=["READ", "WRITE"], channels=["room"]),
        ],
    )
    text = with_options(text, "/hist", "history_size = 20000")
    return with_options(text, "/pres", "presence = true")


def cluster_config(name: str, port: int, seeds: list[int]) -> str:
    text = render_config(
        [
            vhost("/hist", anonymous=["READ", "WRITE"], channels=["room"]),
            vhost("/pres", anonymous=["READ", "WRITE"], channels=["room"]),
        ],
        server={"node_name": name},
    )
    text = with_options(text, "/hist", "history_size = 1000")
    text = with_options(text, "/pres", "presence = true")
    seed_list = ", ".join(f'"127.0.0.1:{p}"' for p in seeds)
    return text + f'\n[cluster]\naddr = "127.0.0.1:{port}"\nseeds = [{seed_list}]\ncookie = "{COOKIE}"\n'


def start_cluster(server_factory, n: int = 3):
    ports: list[int] = []
    while len(ports) < n:  # free_port may hand out the same port twice
        port = free_port()
        if port not in ports:
            ports.append(port)
    return [
        server_factory(cluster_config(f"n{i}", ports[i], [p for p in ports if p != ports[i]]), name=f"n{i}")
        for i in range(n)
    ]


def body(message: dict) -> dict:
    (event,) = message.keys()
    return message[event]


async def publish(ws, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await send(ws, "broadcast", {"event": "m", "channel": "room", "data": i})
    # Each broadcast is acknowledged; a subscribed publisher also gets the
    # deliveries, so count acknowledgements only.
    acks = 0
    while acks < n:
        if "broadcasted" in await recv(ws):
            acks += 1


async def test_reconnect_with_since_gets_exactly_the_missed_messages_then_live_ones(server_factory):
    server = server_factory(single_config())
    url = server.url("/hist")
    async with connect(url) as publisher:
        async with connect(url) as sub:
            reply = await request(sub, "subscribe", {"channel": "room"})
            assert reply == {"subscribed": "room"}, reply
            await publish(publisher, 5)
            seen = [body(await recv(sub)) for _ in range(5)]
            assert [m["data"] for m in seen] == list(range(5))
            assert [m["offset"] for m in seen] == [1, 2, 3, 4, 5]
            epoch = seen[0]["epoch"]
            assert len(epoch) == 16 and all(m["epoch"] == epoch for m in seen)
        # The subscriber is gone; 100 messages go by.
        await publish(publisher, 100, start=5)
        async with connect(url) as back:
            reply = await request(back, "subscribe", {"channel": "room", "since": {"offset": 5, "epoch": epoch}})
            assert reply == {"subscribed": "room", "recovered": True, "offset": 105, "epoch": epoch}, reply
            missed = [body(m) for m in await recv_n(back, 100)]
            assert [m["data"] for m in missed] == list(range(5, 105))
            assert [m["offset"] for m in missed] == list(range(6, 106))
            await publish(publisher, 3, start=105)
            live = [body(await recv(back)) for _ in range(3)]
            assert [m["offset"] for m in live] == [106, 107, 108]
            await expect_silence(back)

            # `history` reads the newest messages, or pages after `since`.
            reply = body(await request(back, "history", {"channel": "room", "limit": 2}))
            assert reply["offset"] == 108 and reply["epoch"] == epoch
            assert [body(m)["data"] for m in reply["messages"]] == [106, 107]
            reply = body(
                await request(back, "history", {"channel": "room", "limit": 3, "since": {"offset": 10, "epoch": epoch}})
            )
            assert reply["recovered"] is True
            assert [body(m)["offset"] for m in reply["messages"]] == [11, 12, 13]

        async with connect(url) as stale:
            # Another epoch (e.g. before a restart): cannot recover.
            reply = await request(
                stale, "subscribe", {"channel": "room", "since": {"offset": 5, "epoch": "0123456789abcdef"}}
            )
            assert reply == {"subscribed": "room", "recovered": False, "offset": 108, "epoch": epoch}
            await expect_silence(stale)
            bad = await request(stale, "history", {"channel": "room", "since": {"offset": "x"}})
            assert bad["err"] == "INVALID_PAYLOAD"

    # A vhost without history delivers the classic shape.
    async with connect(server.url("/plain")) as plain:
        await request(plain, "subscribe", {"channel": "room"})
        await send(plain, "broadcast", {"event": "m", "channel": "room", "data": 1})
        got = [await recv(plain), await recv(plain)]
        assert {"m": {"channel": "room", "data": 1, "user": None}} in got


async def test_presence_lists_members_and_announces_joins_and_leaves(server_factory):
    server = server_factory(single_config())
    url = server.url("/pres")
    async with connect(url) as a:
        first = await request(a, "subscribe", {"channel": "room"})
        assert first["subscribed"] == "room"
        (me,) = first["members"]
        async with connect(url) as b:
            second = await request(b, "subscribe", {"channel": "room"})
            assert len(second["members"]) == 2
            (joined,) = [m for m in second["members"] if m["sid"] != me["sid"]]
            assert await recv(a) == {"joined": {"channel": "room", "sid": joined["sid"], "user": None}}
            listed = body(await request(a, "presence", {"channel": "room"}))
            assert sorted(m["sid"] for m in listed["members"]) == sorted([me["sid"], joined["sid"]])
        assert await recv(a) == {"left": {"channel": "room", "sid": joined["sid"], "user": None}}
        listed = body(await request(a, "presence", {"channel": "room"}))
        assert listed["members"] == [me]


M64 = (1 << 64) - 1


def _fnv1a(h: int, data: bytes) -> int:
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def sequencer(nodes: list[str], vhost_path: str, channel: str) -> str:
    """The node that orders a channel (the cluster's rendezvous hash)."""

    def score(node: str) -> int:
        h = _fnv1a(0xCBF29CE484222325, node.encode())
        h = _fnv1a(h, b"\0")
        h = _fnv1a(h, vhost_path.encode())
        h = _fnv1a(h, b"\0")
        return _mix(_fnv1a(h, channel.encode()))

    return max(nodes, key=lambda n: (score(n), n))


def channel_ordered_by(node: str, names: list[str]) -> str:
    for i in range(1000):
        channel = f"room{i}"
        if sequencer(names, "/hist", channel) == node:
            return channel
    raise AssertionError("no channel found")


_MARKER = [0]


async def converge(nodes, channel: str, publisher) -> dict:
    """Waits until a broadcast on `channel` lands in every node's history
    with one epoch; returns that last position."""
    async def landed() -> bool:
        _MARKER[0] += 1
        await send(publisher, "broadcast", {"event": "warm", "channel": channel, "data": _MARKER[0]})
        while "broadcasted" not in await recv(publisher):
            pass
        seen = []
        for n in nodes:
            async with connect(n.url("/hist")) as ws:
                answer = await request(ws, "history", {"channel": channel, "limit": 1})
                if "history" not in answer:
                    return False
                reply = answer["history"]
                if not reply["messages"] or body(reply["messages"][0])["data"] != _MARKER[0]:
                    return False
                seen.append((reply["offset"], reply["epoch"]))
        return len(set(seen)) == 1

    assert await until(landed, timeout=30.0), "the cluster never agreed on the channel's history"
    async with connect(nodes[0].url("/hist")) as ws:
        reply = body(await request(ws, "history", {"channel": channel, "limit": 1}))
    return {"offset": reply["offset"], "epoch": reply["epoch"]}


async def publish_on(ws, channel: str, n: int, start: int) -> None:
    for i in range(start, start + n):
        await send(ws, "broadcast", {"event": "m", "channel": channel, "data": i})
    acks = 0
    while acks < n:
        if "broadcasted" in await recv(ws):
            acks += 1


async def test_recovery_on_another_node_after_kill_9(server_factory):
    nodes = start_cluster(server_factory)
    names = [n.name for n in nodes]
    # n0 orders the channel and publishes; the client is on n1, which is
    # killed; it recovers on n2.
    channel = channel_ordered_by("n0", names)
    async with connect(nodes[0].url("/hist")) as publisher:
        assert (await request(publisher, "subscribe", {"channel": channel}))["subscribed"] == channel
        await request(publisher, "unsubscribe", {"channel": channel})
        position = await converge(nodes, channel, publisher)
        async with connect(nodes[1].url("/hist")) as sub:
            reply = await request(sub, "subscribe", {"channel": channel, "since": position})
            assert reply["recovered"] is True, reply
            await publish_on(publisher, channel, 10, 0)
            got = [body(await recv(sub)) for _ in range(10)]
            assert [m["data"] for m in got] == list(range(10))
            position = {"offset": got[-1]["offset"], "epoch": got[-1]["epoch"]}
            nodes[1].kill()
        await publish_on(publisher, channel, 100, 10)
        async with connect(nodes[2].url("/hist")) as back:
            reply = await request(back, "subscribe", {"channel": channel, "since": position})
            assert reply == {
                "subscribed": channel,
                "recovered": True,
                "offset": position["offset"] + 100,
                "epoch": position["epoch"],
            }, reply
            missed = [body(m) for m in await recv_n(back, 100)]
            assert [m["data"] for m in missed] == list(range(10, 110))
            assert [m["offset"] for m in missed] == list(range(position["offset"] + 1, position["offset"] + 101))
            await publish_on(publisher, channel, 1, 110)
            assert body(await recv(back))["offset"] == position["offset"] + 101
            await expect_silence(back)


async def test_the_sequencers_death_starts_a_new_epoch(server_factory):
    nodes = start_cluster(server_factory)
    names = [n.name for n in nodes]
    channel = channel_ordered_by("n2", names)
    async with connect(nodes[0].url("/hist")) as publisher:
        await request(publisher, "subscribe", {"channel": channel})
        await request(publisher, "unsubscribe", {"channel": channel})
        old = await converge(nodes, channel, publisher)
        nodes[2].kill()
        new = await converge(nodes[:2], channel, publisher)
        assert new["epoch"] != old["epoch"]
        async with connect(nodes[1].url("/hist")) as back:
            reply = await request(back, "subscribe", {"channel": channel, "since": old})
            assert reply["recovered"] is False and reply["epoch"] == new["epoch"], reply


async def test_presence_across_three_nodes_and_a_killed_nodes_members_leave(server_factory):
    nodes = start_cluster(server_factory)
    sockets = []
    try:
        for n in nodes:
            ws = await connect(n.url("/pres")).__aenter__()
            sockets.append(ws)
        for ws in sockets:
            reply = await request(ws, "subscribe", {"channel": "room"})
            assert reply["subscribed"] == "room" and reply["members"], reply

        async def everyone_sees_three() -> bool:
            for ws in sockets:
                await send(ws, "presence", {"channel": "room"})
                while True:
                    m = await recv(ws)
                    if "presence" in m:
                        break
                if len(body(m)["members"]) != 3:
                    return False
            return True

        assert await until(everyone_sees_three), "presence never converged on three members"

        # A session joining on n1 is announced on n0 and n2; its leaving too.
        async def drain(ws) -> None:
            while True:
                try:
                    await asyncio.wait_for(ws.recv(), 0.3)
                except asyncio.TimeoutError:
                    return

        for ws in sockets:
            await drain(ws)
        async with connect(nodes[1].url("/pres")) as late:
            reply = await request(late, "subscribe", {"channel": "room"})
            assert len(reply["members"]) == 4, reply
            sids = set()
            for ws in sockets:
                joined = await recv(ws)
                assert "joined" in joined and joined["joined"]["channel"] == "room", joined
                sids.add(joined["joined"]["sid"])
            (late_sid,) = sids
            assert late_sid in [m["sid"] for m in reply["members"]]
        for ws in sockets:
            assert await recv(ws) == {"left": {"channel": "room", "sid": late_sid, "user": None}}
        listed = body(await request(sockets[0], "presence", {"channel": "room"}))["members"]
        # A node lists its own members first: n2's member is its first.
        listed2 = body(await request(sockets[2], "presence", {"channel": "room"}))["members"]
        victim_sid = listed2[0]["sid"]
        assert victim_sid in [m["sid"] for m in listed]
        nodes[2].kill()

        async def gone() -> bool:
            for ws in sockets[:2]:
                await send(ws, "presence", {"channel": "room"})
                while True:
                    m = await recv(ws)
                    if "presence" in m:
                        break
                if victim_sid in [x["sid"] for x in body(m)["members"]]:
                    return False
            return True

        assert await until(gone, timeout=15.0), "the killed node's member stayed"
    finally:
        for ws in sockets:
            try:
                await ws.close()
            except Exception:
                pass


async def test_webrocket_ctl_turns_history_on_for_one_channel(server_factory):
    import subprocess

    from conftest import REPO

    server = server_factory(single_config())
    ctl = [
        str(REPO / "target/debug/webrocket-ctl"),
        "--admin-addr",
        server.info["admin"],
        "--storage-dir",
        str(server.storage_dir),
    ]
    done = subprocess.run(
        ctl + ["set_channel_options", "/plain", "room", "--history-size", "2", "--presence"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "history_size 2" in done.stdout and "presence true" in done.stdout
    shown = subprocess.run(ctl + ["channel_options", "/plain", "room"], capture_output=True, text=True, timeout=30)
    assert "history_size 2" in shown.stdout, shown.stdout + shown.stderr
    async with connect(server.url("/plain")) as ws:
        reply = await request(ws, "subscribe", {"channel": "room"})
        assert reply["members"][0]["user"] is None
        for i in range(3):
            await send(ws, "broadcast", {"event": "m", "channel": "room", "data": i})
        # Each delivery comes before its acknowledgement.
        got = [await recv(ws) for _ in range(6)]
        assert [body(m)["offset"] for m in got if "m" in m] == [1, 2, 3]
        history = body(await request(ws, "history", {"channel": "room"}))
        assert [body(m)["offset"] for m in history["messages"]] == [2, 3]
