"""Server broadcasts with a skip list (seed 002's "broadcast ... skip") on a
three-node cluster: `RB` to the sessions of a MonoRail resource and `BS` to
the subscribers of a webrocket channel reach the sessions of every node
but the skipped ones, whichever node the backend asked."""

from __future__ import annotations

import asyncio
import json
import time

from backend_fixtures import HEARTBEAT, LIVENESS, backend_endpoint, cluster_node_config, free_port, vhost_token, webrocket_backend
from conftest import connect, connect_resource, recv, vhost

COOKIE = "python-interop-server-broadcast-cookie"


def cluster_config(name: str, port: int, seed: int | None) -> str:
    live = vhost("/live", anonymous=["READ", "WRITE"])
    live["resources"] = [{"name": "nodes"}]
    return cluster_node_config([live], name, port, seed, COOKIE)


def client(node) -> webrocket_backend.Client:
    return webrocket_backend.Client(backend_endpoint(node), "/live", vhost_token(node, "/live"))


def until_formed(node, timeout: float = 30.0) -> None:
    """Opens a channel through `node` until the cluster commits it (a
    channel change needs a majority: the cluster has formed)."""
    deadline = time.monotonic() + timeout
    c = client(node)
    try:
        while True:
            try:
                c.open_channel("room")
                return
            except webrocket_backend.BackendError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        c.close()


async def quiet(ws, seconds: float = 1.0) -> bool:
    """True when nothing arrives within `seconds`."""
    try:
        message = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    raise AssertionError(f"unexpected message {message!r}")


async def test_rb_and_bs_reach_every_node_but_the_skipped_sessions(server_factory):
    ports = [free_port() for _ in range(3)]
    nodes = [
        server_factory(cluster_config(f"n{i}", ports[i], ports[i - 1] if i else None), name=f"n{i}")
        for i in range(3)
    ]
    for node in nodes:
        await asyncio.to_thread(until_formed, node)

    # MonoRail sessions on n1 and n2; the backend asks n0.
    async with connect_resource(nodes[1].url("/live/nodes")) as r1, connect_resource(
        nodes[2].url("/live/nodes")
    ) as r2:
        ids = []
        for ws in (r1, r2):
            await ws.send(json.dumps({"handler": "init"}))
            session = await recv(ws)
            assert session["handler"] == "session", session
            ids.append(session["id"])
        c = client(nodes[0])
        try:
            await asyncio.to_thread(c.resource_broadcast, "nodes", {"handler": "notice", "n": 1})
            for ws in (r1, r2):
                assert await recv(ws) == {"handler": "notice", "n": 1}
            await asyncio.to_thread(
                c.resource_broadcast, None, {"handler": "notice", "n": 2}, [ids[1]]
            )
            assert await recv(r1) == {"handler": "notice", "n": 2}
            assert await quiet(r2)
        finally:
            c.close()

    # webrocket subscribers of a channel on every node; the backend asks n2.
    async with connect(nodes[0].url("/live")) as s0, connect(nodes[1].url("/live")) as s1, connect(
        nodes[2].url("/live")
    ) as s2:
        for ws in (s0, s1, s2):
            await ws.send(json.dumps({"subscribe": {"channel": "room"}}))
            assert (await recv(ws))["subscribed"] == "room"
        c = client(nodes[2])
        try:
            await asyncio.to_thread(c.broadcast_except, "room", "news", {"n": 3}, [s1.sid])
            for ws in (s0, s2):
                assert await recv(ws) == {"news": {"channel": "room", "data": {"n": 3}, "user": None}}
            assert await quiet(s1)
            # Bad input: a malformed skip list is refused, nothing is sent.
            try:
                await asyncio.to_thread(c.request, "BS", b"room", b"news", b"{}", b"[1]")
                raise AssertionError("BS with a bad skip list was accepted")
            except webrocket_backend.BackendError as error:
                assert error.code == 404, error
            assert await quiet(s0, 0.3)
        finally:
            c.close()


def backend_cluster_config(name: str, port: int, seed: int | None) -> str:
    mr = vhost("/mr", anonymous=["READ"])
    mr["resources"] = [{"name": "catalog", "source": "backend"}]
    return cluster_node_config([mr], name, port, seed, COOKIE)


async def test_a_backend_resource_is_served_by_a_worker_on_another_node(server_factory, tmp_path):
    """The only worker is on n0; a session on n1 asks. The request reaches
    the worker like a trigger passed between nodes, and its `RA` (sent to
    n0, naming n1 in the request id) is passed back to n1."""
    from monorail_sqlite_worker import SqliteWorker

    ports = [free_port() for _ in range(2)]
    nodes = [
        server_factory(backend_cluster_config(f"n{i}", ports[i], ports[i - 1] if i else None), name=f"n{i}")
        for i in range(2)
    ]
    worker = SqliteWorker(backend_endpoint(nodes[0]), "/mr", vhost_token(nodes[0], "/mr"),
                          str(tmp_path / "items.db"), heartbeat_interval=HEARTBEAT,
                          liveness=LIVENESS).start()
    try:
        deadline = time.monotonic() + 30
        while True:  # until the cluster has formed and committed the put
            try:
                await asyncio.to_thread(worker.put, "catalog", {"id": "a", "color": "red"})
                break
            except webrocket_backend.BackendError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        async with connect_resource(nodes[1].url("/mr/catalog")) as ws:
            for _ in range(200):  # until n1 knows n0's worker (a heartbeat)
                await ws.send(json.dumps({"handler": "all"}))
                reply = await recv(ws)
                if reply["handler"] != "error":
                    break
                assert reply["error"]["id"] == "ASSIGNATION_FAILED", reply
                await asyncio.sleep(0.1)
            assert reply == {"handler": "list", "items": [{"id": "a", "color": "red"}]}
            await ws.send(json.dumps({"handler": "get", "params": {"id": "zz"}}))
            assert await recv(ws) == {"handler": "remove", "params": {"id": "zz"}}
    finally:
        worker.stop()
