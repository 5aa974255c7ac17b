"""MonoRail resources on a three-node cluster: items are replicated
changes, so a watcher on any node sees every change of a resource, in the
one order of the replicated log, whichever node a backend wrote through."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from backend_fixtures import backend_endpoint, cluster_node_config, free_port, vhost_token, webrocket_backend
from conftest import connect_resource as connect, recv, vhost

COOKIE = "python-interop-cluster-cookie-0123"
PUTS_PER_NODE = 20


def cluster_config(name: str, port: int, seed: int | None) -> str:
    mr = vhost("/mr", anonymous=["READ"])
    mr["resources"] = [{"name": "nodes"}]
    return cluster_node_config([mr], name, port, seed, COOKIE)


def client(node) -> webrocket_backend.Client:
    return webrocket_backend.Client(backend_endpoint(node), "/mr", vhost_token(node, "/mr"))


def put_until_committed(node, item: dict, timeout: float = 30.0) -> None:
    """Until the cluster has formed a put answers ER 597."""
    deadline = time.monotonic() + timeout
    c = client(node)
    try:
        while True:
            try:
                c.put_item("nodes", item)
                return
            except webrocket_backend.BackendError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        c.close()


async def test_watchers_on_every_node_see_every_change_in_one_order(server_factory):
    ports = [free_port() for _ in range(3)]
    nodes = [
        server_factory(cluster_config(f"n{i}", ports[i], ports[i - 1] if i else None), name=f"n{i}")
        for i in range(3)
    ]
    for node in nodes:
        await asyncio.to_thread(put_until_committed, node, {"id": "warm", "node": node.name})

    async with connect(nodes[1].url("/mr/nodes")) as w1, connect(nodes[2].url("/mr/nodes")) as w2:
        for ws in (w1, w2):
            await ws.send(json.dumps({"handler": "watch"}))
            first = await recv(ws)
            assert first["handler"] == "list", first
            assert {i["id"] for i in first["items"]} == {"warm"}

        # Three backends write at once, each through its own node.
        errors: list[BaseException] = []

        def writer(index: int) -> None:
            c = client(nodes[index])
            try:
                for n in range(PUTS_PER_NODE):
                    c.put_item("nodes", {"id": f"k{n % 4}", "writer": index, "n": n})
            except BaseException as error:  # reported below
                errors.append(error)
            finally:
                c.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        await asyncio.to_thread(lambda: [t.join(60) for t in threads])
        assert not errors, errors

        total = 3 * PUTS_PER_NODE
        seen = []
        for ws in (w1, w2):
            messages = [await recv(ws, 10) for _ in range(total)]
            assert all(m["handler"] == "item" for m in messages)
            seen.append([(m["data"]["writer"], m["data"]["n"]) for m in messages])
        assert seen[0] == seen[1], "two nodes delivered the changes in different orders"
        assert sorted(seen[0]) == sorted((w, n) for w in range(3) for n in range(PUTS_PER_NODE))
        # Every writer's own puts arrive in the order it made them.
        for w in range(3):
            mine = [n for (who, n) in seen[0] if who == w]
            assert mine == list(range(PUTS_PER_NODE))

    # Every node holds the same items.
    async def items(node) -> list:
        async with connect(node.url("/mr/nodes")) as ws:
            await ws.send(json.dumps({"handler": "all"}))
            return (await recv(ws))["items"]

    held = [await items(node) for node in nodes]
    assert held[0] == held[1] == held[2]
