"""Black-box tests of the MonoRail dialect (seed 002): resource endpoints
at /<vhost>/<resource>, the seed's handlers, items written by backends
(pyzmq PI / RI / RB) and webrocket-ctl, watches, errors, limits and
durability. Clients: the `websockets` library, and the Node `ws` package
(tests/js) driven through a line bridge."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import pytest
import websockets

from backend_fixtures import backend_endpoint, vhost_token
from conftest import REPO, connect_resource as connect, recv, render_config, secret_hash, user, vhost

import webrocket_backend

CTL_BIN = REPO / "target/debug/webrocket-ctl"


def monorail_vhosts() -> list[dict]:
    """/mr: anonymous READ, resources `nodes` (id) and `skus` (sku).
    /locked: no anonymous rights, a user `ops` with READ and a secret."""
    open_vhost = vhost("/mr", anonymous=["READ"])
    open_vhost["resources"] = [
        {"name": "nodes", "source": "store", "id_field": "id"},
        {"name": "skus", "id_field": "sku"},
    ]
    locked = vhost("/locked", users=[user("ops", ["READ"], "ops-secret"), user("blind", [])])
    locked["resources"] = [{"name": "nodes"}]
    return [open_vhost, locked]


def config(limits: dict | None = None) -> str:
    return render_config(monorail_vhosts(), limits=limits)


def backend(srv, vhost_path: str = "/mr") -> webrocket_backend.Client:
    return webrocket_backend.Client(backend_endpoint(srv), vhost_path, vhost_token(srv, vhost_path))


def admin_stats(srv) -> dict:
    """GET /stats of the admin API, with the node cookie."""
    import urllib.request

    cookie = (srv.storage_dir / "webrocket.cookie").read_text().strip()
    req = urllib.request.Request(f"http://{srv.info['admin']}/stats",
                                 headers={"x-webrocket-cookie": cookie})
    with urllib.request.urlopen(req, timeout=10) as answer:
        return json.loads(answer.read())


def ctl(srv, *args: str) -> dict:
    out = subprocess.run(
        [str(CTL_BIN), "--admin-addr", srv.info["admin"], "--storage-dir", str(srv.storage_dir),
         "--json", *args],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def say(ws, message: dict) -> None:
    await ws.send(json.dumps(message))


async def ask(ws, message: dict) -> dict:
    await say(ws, message)
    return await recv(ws)


async def in_order(ws) -> None:
    """Everything sent to `ws` before this is in: a request is answered
    after what was queued for the session before it."""
    reply = await ask(ws, {"handler": "init"})
    assert reply["handler"] == "session", reply


def assert_mr_error(reply: dict, error_id: str, handler: str | None = None) -> None:
    assert reply.get("handler") == "error", reply
    error = reply["error"]
    assert error["id"] == error_id, reply
    assert isinstance(error["code"], int) and error["message"], reply
    if handler is not None:
        assert error.get("handler") == handler, reply


@pytest.fixture
def mr(server_factory):
    return server_factory(config())


async def test_init_all_query_get(mr):
    client = backend(mr)
    client.put_item("nodes", {"id": 1, "state": "up", "load": 3})
    client.put_item("nodes", {"id": 2, "state": "down", "load": 9})
    client.put_item("nodes", {"id": "n3", "state": "up", "load": 7})
    async with connect(mr.url("/mr/nodes")) as ws:
        session = await ask(ws, {"handler": "init"})
        assert session["handler"] == "session" and len(session["id"]) == 32
        everything = await ask(ws, {"handler": "all"})
        assert everything["handler"] == "list"
        assert sorted(str(i["id"]) for i in everything["items"]) == ["1", "2", "n3"]
        up = await ask(ws, {"handler": "query", "params": {"state": "up"}})
        assert sorted(str(i["id"]) for i in up["items"]) == ["1", "n3"]
        heavy = await ask(ws, {"handler": "query", "params": {"load": {"$gte": 7}}})
        assert sorted(str(i["id"]) for i in heavy["items"]) == ["2", "n3"]
        one = await ask(ws, {"handler": "get", "params": {"id": 2}})
        assert one == {"handler": "item", "data": {"id": 2, "state": "down", "load": 9}}
        gone = await ask(ws, {"handler": "get", "params": {"id": 99}})
        assert gone == {"handler": "remove", "params": {"id": 99}}
        # The monorail nukleus's counters are in the admin API's /stats
        # (published every 200 ms).
        for _ in range(100):
            counters = admin_stats(mr)["counters"]
            if counters.get("monorail.sessions") == 1:
                break
            await asyncio.sleep(0.05)
        assert counters.get("monorail.sessions") == 1, counters
        assert counters.get("monorail.messages", 0) >= 6, counters
    # Another resource of the same vhost has its own items.
    async with connect(mr.url("/mr/skus")) as ws:
        assert (await ask(ws, {"handler": "all"}))["items"] == []
    client.close()


async def test_watch_gets_items_and_removes_until_stop(mr):
    client = backend(mr)
    client.put_item("nodes", {"id": 1, "state": "up"})
    async with connect(mr.url("/mr/nodes")) as ws:
        first = await ask(ws, {"handler": "watch", "params": {"state": "up"}})
        assert first == {"handler": "list", "items": [{"id": 1, "state": "up"}]}
        client.put_item("nodes", {"id": 2, "state": "up"})
        assert await recv(ws) == {"handler": "item", "data": {"id": 2, "state": "up"}}
        client.put_item("nodes", {"id": 3, "state": "down"})  # not watched
        client.put_item("nodes", {"id": 1, "state": "down"})  # leaves the watch
        assert await recv(ws) == {"handler": "remove", "params": {"id": 1}}
        client.remove_item("nodes", 2)
        assert await recv(ws) == {"handler": "remove", "params": {"id": 2}}
        await say(ws, {"handler": "stop", "params": {"state": "up"}})
        await in_order(ws)  # the stop is in before the next put
        client.put_item("nodes", {"id": 4, "state": "up"})
        # Nothing for the stopped watch: the next message is the init reply.
        await in_order(ws)
    with pytest.raises(webrocket_backend.BackendError) as error:
        client.remove_item("nodes", 2)
    assert error.value.code == 404
    client.close()


async def test_ctl_resources_and_items_are_durable(mr):
    assert ctl(mr, "add_resource", "/mr", "logs", "--id-field", "key")["resource"] == "logs"
    listed = ctl(mr, "list_resources", "/mr")["resources"]
    assert {r["name"] for r in listed} == {"nodes", "skus", "logs"}
    async with connect(mr.url("/mr/logs")) as ws:
        assert (await ask(ws, {"handler": "watch"}))["items"] == []
        ctl(mr, "put_item", "/mr", "logs", '{"key": "a b", "line": "started"}')
        assert await recv(ws) == {"handler": "item", "data": {"key": "a b", "line": "started"}}
        ctl(mr, "put_item", "/mr", "logs", '{"key": "c", "line": "x"}')
        await recv(ws)
        ctl(mr, "remove_item", "/mr", "logs", "c")
        assert await recv(ws) == {"handler": "remove", "params": {"key": "c"}}
    mr.restart()
    async with connect(mr.url("/mr/logs")) as ws:
        items = (await ask(ws, {"handler": "all"}))["items"]
        assert items == [{"key": "a b", "line": "started"}]
        ctl(mr, "delete_resource", "/mr", "logs")
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1001
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(mr.url("/mr/logs")):
            pass
    assert refused.value.response.status_code == 404


async def test_bad_messages_get_error_messages_and_the_session_stays(mr):
    async with connect(mr.url("/mr/nodes")) as ws:
        assert_mr_error(await ask(ws, "not json"), "INVALID_MESSAGE_FORMAT")  # type: ignore[arg-type]
        await ws.send("{")
        assert_mr_error(await recv(ws), "INVALID_MESSAGE_FORMAT")
        await ws.send("[1, 2]")
        assert_mr_error(await recv(ws), "INVALID_MESSAGE_FORMAT")
        assert_mr_error(await ask(ws, {"params": {}}), "INVALID_MESSAGE_FORMAT")
        assert_mr_error(await ask(ws, {"handler": "fly"}), "UNDEFINED_EVENT", "fly")
        assert_mr_error(await ask(ws, {"handler": "query"}), "INVALID_PAYLOAD", "query")
        assert_mr_error(await ask(ws, {"handler": "get", "params": 3}), "INVALID_PAYLOAD", "get")
        assert_mr_error(await ask(ws, {"handler": "get", "params": {"state": "up"}}),
                        "INVALID_PAYLOAD", "get")
        assert_mr_error(await ask(ws, {"handler": "query", "params": {"a": {"$regex": "x"}}}),
                        "INVALID_PAYLOAD", "query")
        assert_mr_error(await ask(ws, {"handler": "authenticate", "user": "ghost"}),
                        "USER_NOT_FOUND", "authenticate")
        await ws.send(b"\x00binary")
        assert_mr_error(await recv(ws), "INVALID_MESSAGE_FORMAT")
        await in_order(ws)
    client = backend(mr)
    for bad in ([b"nodes", b"{}"], [b"nodes", b"[1]"], [b"no/pe", b'{"id": 1}'], [b"nodes"]):
        with pytest.raises(webrocket_backend.BackendError) as error:
            client.request("PI", *bad)
        assert error.value.code == 400, bad
    with pytest.raises(webrocket_backend.BackendError) as error:
        client.put_item("gone", {"id": 1})
    assert error.value.code == 404
    client.close()


async def test_authentication_and_read_permission(server_factory):
    srv = server_factory(config())
    async with connect(srv.url("/locked/nodes")) as ws:
        assert_mr_error(await ask(ws, {"handler": "all"}), "ACCESS_DENIED", "all")
        wrong = {"handler": "authenticate", "user": "ops", "secret": "nope"}
        assert_mr_error(await ask(ws, wrong), "INVALID_CREDENTIALS", "authenticate")
        await say(ws, {"handler": "authenticate", "user": "ops", "secret": "ops-secret"})
        # Held while the secret is checked, answered in order after it.
        await say(ws, {"handler": "all"})
        assert await recv(ws) == {"handler": "authenticated", "user": "ops"}
        assert await recv(ws) == {"handler": "list", "items": []}
    async with connect(srv.url("/locked/nodes")) as ws:
        assert await ask(ws, {"handler": "authenticate", "user": "blind"}) == {
            "handler": "authenticated", "user": "blind"}
        assert_mr_error(await ask(ws, {"handler": "watch"}), "ACCESS_DENIED", "watch")


async def test_broadcast_to_a_resource_or_vhost_with_skip(mr):
    client = backend(mr)
    async with connect(mr.url("/mr/nodes")) as a, connect(mr.url("/mr/nodes")) as b, \
            connect(mr.url("/mr/skus")) as c:
        sid_a = (await ask(a, {"handler": "init"}))["id"]
        await in_order(b)
        await in_order(c)
        client.resource_broadcast("nodes", {"handler": "notice", "text": "hi"}, skip=[sid_a])
        assert await recv(b) == {"handler": "notice", "text": "hi"}
        client.resource_broadcast(None, {"handler": "notice", "text": "all"})
        for ws in (a, b, c):
            assert await recv(ws) == {"handler": "notice", "text": "all"}
        # a got only the vhost-wide one: its next message is the init reply.
        await in_order(a)
    with pytest.raises(webrocket_backend.BackendError) as error:
        client.resource_broadcast("nodes", {"no": "handler"})
    assert error.value.code == 400
    with pytest.raises(webrocket_backend.BackendError) as error:
        client.resource_broadcast("gone", {"handler": "x"})
    assert error.value.code == 404
    client.close()


async def test_limits(server_factory):
    srv = server_factory(config({"max_items_per_resource": 2, "max_watches_per_session": 1,
                                 "max_item_size": 100}))
    client = backend(srv)
    client.put_item("nodes", {"id": 1})
    client.put_item("nodes", {"id": 2})
    client.put_item("nodes", {"id": 2, "replaced": True})  # replacing is fine
    for item in ({"id": 3}, {"id": 4, "pad": "x" * 200}):
        with pytest.raises(webrocket_backend.BackendError) as error:
            client.put_item("nodes", item)
        assert error.value.code == 413
    async with connect(srv.url("/mr/nodes")) as ws:
        assert len((await ask(ws, {"handler": "watch", "params": {"id": 1}}))["items"]) == 1
        assert_mr_error(await ask(ws, {"handler": "watch", "params": {"id": 2}}),
                        "TOO_MANY_SUBSCRIPTIONS", "watch")
        # The same watch again is not a second one.
        assert (await ask(ws, {"handler": "watch", "params": {"id": 1}}))["handler"] == "list"
    client.close()


def node_bridge_available() -> bool:
    return shutil.which("node") is not None and (REPO / "tests/js/node_modules/ws").exists()


@pytest.mark.skipif(not node_bridge_available(), reason="tests/js not installed (tests/run-all.sh installs it)")
async def test_node_ws_client(mr):
    """The seed's recommended client, the Node `ws` package."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(REPO / "tests/js/bridge.mjs"), mr.url("/mr/nodes"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def line() -> dict:
        raw = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert raw, "the bridge ended"
        return json.loads(raw)

    async def send(message: dict) -> None:
        proc.stdin.write((json.dumps(message) + "\n").encode())
        await proc.stdin.drain()

    try:
        assert await line() == {"event": "open"}
        await send({"handler": "init"})
        assert (await line())["handler"] == "session"
        await send({"handler": "watch", "params": {"state": "up"}})
        assert await line() == {"handler": "list", "items": []}
        client = backend(mr)
        client.put_item("nodes", {"id": 7, "state": "up"})
        assert await line() == {"handler": "item", "data": {"id": 7, "state": "up"}}
        client.remove_item("nodes", 7)
        assert await line() == {"handler": "remove", "params": {"id": 7}}
        client.close()
        await send({"handler": "nope"})
        assert (await line())["error"]["id"] == "UNDEFINED_EVENT"
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)
