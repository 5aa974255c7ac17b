"""Durable channel histories (`history_durable`): a channel's history and
its epoch outlive a restart of the node, kill -9 included, so a client
that comes back with `subscribe` + `since` gets exactly what it missed.
Channels without the option keep today's behaviour: after a restart
their epoch is new and `since` answers `recovered: false`."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import zlib

from conftest import REPO, connect, expect_silence, recv, recv_n, render_config, request, send, vhost
from test_cluster import until
from test_history_presence import body, publish, with_options

CTL_BIN = REPO / "target/debug/webrocket-ctl"


def config() -> str:
    text = render_config(
        [
            vhost("/dur", anonymous=["READ", "WRITE"], channels=["room"]),
            vhost("/mem", anonymous=["READ", "WRITE"], channels=["room"]),
            vhost("/plain", anonymous=["READ", "WRITE"], channels=["room"]),
        ],
    )
    text = with_options(text, "/dur", "history_size = 1000\nhistory_durable = true")
    return with_options(text, "/mem", "history_size = 1000")


def history_files(server) -> list:
    directory = server.storage_dir / "history"
    return sorted(directory.glob("*.hist")) if directory.exists() else []


def no_history_file(server):
    async def gone() -> bool:
        return not history_files(server)

    return gone


async def first_messages(url: str, n: int) -> tuple[str, list[dict]]:
    """Subscribes, publishes `n` messages and returns the epoch and what the
    subscriber saw; both connections are closed after."""
    async with connect(url) as publisher, connect(url) as sub:
        assert await request(sub, "subscribe", {"channel": "room"}) == {"subscribed": "room"}
        await publish(publisher, n)
        seen = [body(await recv(sub)) for _ in range(n)]
    assert [m["offset"] for m in seen] == list(range(1, n + 1))
    return seen[0]["epoch"], seen


async def come_back(url: str, offset: int, epoch: str) -> tuple[dict, object]:
    ws = await connect(url)
    reply = await request(ws, "subscribe", {"channel": "room", "since": {"offset": offset, "epoch": epoch}})
    return reply, ws


async def test_a_durable_channel_recovers_the_missed_messages_after_kill_9(server_factory):
    server = server_factory(config())
    epoch, _ = await first_messages(server.url("/dur"), 5)
    mem_epoch, _ = await first_messages(server.url("/mem"), 3)
    # The subscriber is away; 100 messages go by, each acknowledged.
    async with connect(server.url("/dur")) as publisher:
        await publish(publisher, 100, start=5)
    assert len(history_files(server)) == 1

    server.kill()
    server.start()

    reply, back = await come_back(server.url("/dur"), 5, epoch)
    try:
        assert reply == {"subscribed": "room", "recovered": True, "offset": 105, "epoch": epoch}, reply
        missed = [body(m) for m in await recv_n(back, 100)]
        assert [m["data"] for m in missed] == list(range(5, 105))
        assert [m["offset"] for m in missed] == list(range(6, 106))
        assert all(m["epoch"] == epoch for m in missed)
        # The sequence goes on in the same epoch.
        async with connect(server.url("/dur")) as publisher:
            await publish(publisher, 1, start=105)
        live = body(await recv(back))
        assert (live["data"], live["offset"], live["epoch"]) == (105, 106, epoch)
        await expect_silence(back)
    finally:
        await back.close()

    # A channel with a history in memory only starts over.
    reply, back = await come_back(server.url("/mem"), 2, mem_epoch)
    try:
        assert reply["recovered"] is False, reply
        assert "offset" not in reply, reply
        await expect_silence(back)
    finally:
        await back.close()


async def test_a_damaged_history_file_is_reported_and_the_channel_starts_empty(server_factory):
    server = server_factory(config())
    epoch, _ = await first_messages(server.url("/dur"), 20)
    server.stop()
    (path,) = history_files(server)
    data = bytearray(path.read_bytes())
    # A clean stop ends the file with a CLOSE record (length 1, CRC, kind 4).
    assert bytes(data[-9:]) == b"\x01\0\0\0" + zlib.crc32(b"\x04").to_bytes(4, "little") + b"\x04"

    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    server.start()
    assert "damaged" in server.logs(), server.logs()
    reply, back = await come_back(server.url("/dur"), 5, epoch)
    try:
        assert reply["recovered"] is False, reply
        async with connect(server.url("/dur")) as publisher:
            await publish(publisher, 1)
        live = body(await recv(back))
        assert live["offset"] == 1 and live["epoch"] != epoch
    finally:
        await back.close()


def ctl(server, *args: str) -> str:
    done = subprocess.run(
        [str(CTL_BIN), "--admin-addr", server.info["admin"], "--storage-dir", str(server.storage_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def admin(server, method: str, path: str, payload: dict | None = None) -> dict:
    cookie = (server.storage_dir / "webrocket.cookie").read_text().strip()
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(
        f"http://{server.info['admin']}{path}",
        data=data,
        method=method,
        headers={"x-webrocket-cookie": cookie, "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as answer:
        return json.loads(answer.read())


async def test_webrocket_ctl_and_the_admin_api_turn_durability_on_and_off(server_factory):
    server = server_factory(config())
    out = ctl(server, "set_channel_options", "/plain", "room", "--history-size", "50", "--durable")
    assert "history_size 50" in out and "history_durable true" in out, out
    shown = admin(server, "GET", "/vhosts/%2Fplain/channels/room/options")
    assert shown["options"]["history_durable"] is True, shown
    epoch, _ = await first_messages(server.url("/plain"), 10)
    assert len(history_files(server)) == 1

    # A clean stop (SIGTERM) keeps it as well.
    server.restart()
    reply, back = await come_back(server.url("/plain"), 3, epoch)
    try:
        assert reply == {"subscribed": "room", "recovered": True, "offset": 10, "epoch": epoch}, reply
        assert [body(m)["offset"] for m in await recv_n(back, 7)] == list(range(4, 11))
    finally:
        await back.close()

    # Off through the admin API: the file goes, the history stays in memory.
    answer = admin(
        server, "PUT", "/vhosts/%2Fplain/channels/room/options", {"history_size": 50, "history_durable": False}
    )
    assert answer["options"]["history_durable"] is False, answer
    assert await until(no_history_file(server), timeout=5.0), history_files(server)
    reply, back = await come_back(server.url("/plain"), 3, epoch)
    try:
        assert reply["recovered"] is True, reply
    finally:
        await back.close()
    server.kill()
    server.start()
    reply, back = await come_back(server.url("/plain"), 3, epoch)
    try:
        assert reply["recovered"] is False, reply
    finally:
        await back.close()

    # On again, then the channel deleted: the file goes with it.
    ctl(server, "set_channel_options", "/plain", "room", "--history-size", "50", "--durable")
    await first_messages(server.url("/plain"), 2)
    assert len(history_files(server)) == 1
    ctl(server, "delete_channel", "/plain", "room")
    assert await until(no_history_file(server), timeout=5.0), history_files(server)
