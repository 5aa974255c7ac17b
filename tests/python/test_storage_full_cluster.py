"""A clustered node whose storage directory fills up: its replicated log
cannot be written, so it refuses changes with 500 STORAGE (saying why)
while the other nodes carry on committing; once space is back it starts
its raft member again by itself, catches up with what was committed
meanwhile and takes changes again - no restart.

The storage directory of one node is a small filesystem of its own, as in
test_storage_full.py (root and `mount` needed; skipped otherwise).
"""

from __future__ import annotations

import time

import pytest

from backend_fixtures import cluster_node_config, free_port
from conftest import connect, recv, request, send, vhost
from test_storage_full import _run, fill, mount_small_fs
from test_storage_full import admin as storage_admin

COOKIE = "python-storage-full-cluster-cookie"
VHOST = "%2Fchat"


def admin(srv, method: str, path: str, body=None) -> tuple[int, dict]:
    return storage_admin(srv, method, path, body, node=srv.name)


def add_channel(srv, name: str) -> tuple[int, dict]:
    return admin(srv, "POST", f"/vhosts/{VHOST}/channels", {"name": name})


def channels(srv) -> set[str] | None:
    status, body = admin(srv, "GET", f"/vhosts/{VHOST}/channels")
    if status != 200:
        return None
    return {c if isinstance(c, str) else c["name"] for c in body["channels"]}


def until(predicate, timeout: float = 30.0, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@pytest.fixture(params=[2, 0], ids=["follower", "leader"])
def cluster_with_small_storage(request, server_factory, tmp_path):
    """Three cluster nodes (started) and the index of the one whose storage
    directory is a small filesystem: n2 (a follower), or n0 (the node that
    starts the raft cluster, its first leader as a rule)."""
    ports = [free_port() for _ in range(3)]
    vhosts = [vhost("/chat", anonymous=["READ", "WRITE"], channels=["room"])]
    nodes = [
        server_factory(
            cluster_node_config(vhosts, f"n{i}", ports[i], ports[i - 1] if i else None, COOKIE),
            name=f"n{i}",
            start=False,
        )
        for i in range(3)
    ]
    small = nodes[request.param]
    if mount_small_fs(small.storage_dir, tmp_path / "storage.img") is None:
        pytest.skip("needs root and `mount` (tmpfs or a loop-mounted ext4 image) for a small filesystem")
    try:
        for node in nodes:
            node.start()
        yield nodes, request.param
    finally:
        for node in nodes:
            node.stop()
        _run("umount", "-l", str(small.storage_dir))


async def test_a_clustered_node_with_a_full_disk_refuses_changes_and_recovers(cluster_with_small_storage):
    nodes, full = cluster_with_small_storage
    n2, n0 = nodes[full], nodes[1]  # the full node, and another
    assert until(lambda: add_channel(n0, "formed")[0] == 201), "the cluster never committed a change"
    assert until(lambda: "formed" in (channels(n2) or set())), "n2 never applied the first change"

    filler = fill(n2.storage_dir)
    # The first change through n2 that needs its disk stops its raft
    # member; from then on every change through it is refused at once,
    # naming the cause. (That first one may still have been committed by
    # the others: "not confirmed" is not "never".)
    last = (0, {})
    for i in range(100):
        last = add_channel(n2, f"full-{i:03}")
        if last[0] != 201:
            break
    status, body = last
    assert status == 500 and body["code"] == "STORAGE", last
    started = time.monotonic()
    status, body = add_channel(n2, "refused")
    assert status == 500 and body["code"] == "STORAGE", (status, body)
    assert "No space left" in body["error"], body
    assert time.monotonic() - started < 2, "refused at once, not after the change timeout"
    # Nor does it answer reads from a state it cannot keep current.
    status, body = admin(n2, "GET", f"/vhosts/{VHOST}/channels")
    assert status == 503 and "No space left" in body["error"], (status, body)

    # The others carry on (electing another leader if it led), and so do
    # the full node's sessions.
    assert until(lambda: add_channel(n0, "while-full")[0] in (201, 409)), "the others stopped committing"
    async with connect(n2.url("/chat")) as sub, connect(n2.url("/chat")) as pub:
        assert await request(sub, "subscribe", {"channel": "room"}) == {"subscribed": "room"}
        await send(pub, "broadcast", {"event": "e", "channel": "room", "data": 1})
        assert await recv(pub) == {"broadcasted": "room"}
        assert await recv(sub) == {"e": {"channel": "room", "data": 1, "user": None}}

    # Space is back: without a restart, n2 takes changes again and has
    # what was committed while it was full.
    filler.unlink()
    assert until(lambda: add_channel(n2, "after")[0] in (201, 409), timeout=20), add_channel(n2, "after")
    seen = channels(n2)
    assert seen is not None and {"formed", "while-full", "after"} <= seen, seen
    assert "refused" not in seen
    assert until(lambda: "after" in (channels(n0) or set()), timeout=5)
