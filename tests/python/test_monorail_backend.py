"""MonoRail resources with `source = "backend"`: the sessions' requests are
answered by backend workers (backend/python/monorail_sqlite_worker.py
serves them from SQLite), watches are fed by the backend's PI / RI, and a
request no worker takes or answers gets ASSIGNATION_FAILED."""

from __future__ import annotations

import asyncio
import json

import pytest

from backend_fixtures import HEARTBEAT, LIVENESS, backend_endpoint, vhost_token, webrocket_backend
from conftest import connect_resource as connect, recv, render_config, vhost

from monorail_sqlite_worker import SqliteWorker


def config(timeout: str = "5s") -> str:
    mr = vhost("/mr", anonymous=["READ"])
    mr["resources"] = [{"name": "catalog", "source": "backend"}]
    return render_config([mr], limits={"backend_request_timeout": timeout}) + (
        f'\n[backend]\nheartbeat_interval = "{int(HEARTBEAT * 1000)}ms"\nliveness = {LIVENESS}\n'
    )


async def ask(ws, message: dict) -> dict:
    await ws.send(json.dumps(message))
    return await recv(ws)


async def until_served(ws) -> dict:
    """The first `all` a worker answers (the worker's RD may still be on
    its way)."""
    for _ in range(100):
        reply = await ask(ws, {"handler": "all"})
        if reply["handler"] != "error":
            return reply
        assert reply["error"]["id"] == "ASSIGNATION_FAILED", reply
        await asyncio.sleep(0.05)
    pytest.fail("no worker answered")


async def test_a_sqlite_worker_serves_a_backend_resource(server_factory, tmp_path):
    srv = server_factory(config())
    token = vhost_token(srv, "/mr")
    async with connect(srv.url("/mr/catalog")) as ws:
        none = await ask(ws, {"handler": "all"})
        assert none["handler"] == "error" and none["error"]["id"] == "ASSIGNATION_FAILED", none

        worker = SqliteWorker(backend_endpoint(srv), "/mr", token, str(tmp_path / "items.db"),
                              heartbeat_interval=HEARTBEAT, liveness=LIVENESS).start()
        try:
            await asyncio.to_thread(worker.put, "catalog", {"id": "a", "color": "red"})
            await asyncio.to_thread(worker.put, "catalog", {"id": "b", "color": "blue"})
            assert (await until_served(ws))["items"] == [
                {"id": "a", "color": "red"}, {"id": "b", "color": "blue"}]
            red = await ask(ws, {"handler": "query", "params": {"color": "red"}})
            assert red == {"handler": "list", "items": [{"id": "a", "color": "red"}]}
            assert await ask(ws, {"handler": "get", "params": {"id": "b"}}) == {
                "handler": "item", "data": {"id": "b", "color": "blue"}}
            assert await ask(ws, {"handler": "get", "params": {"id": "zz"}}) == {
                "handler": "remove", "params": {"id": "zz"}}
            bad = await ask(ws, {"handler": "get", "params": {}})
            assert bad["error"]["id"] == "INVALID_PAYLOAD"

            assert (await ask(ws, {"handler": "watch", "params": {"color": "red"}}))["items"] == [
                {"id": "a", "color": "red"}]
            await asyncio.to_thread(worker.put, "catalog", {"id": "c", "color": "red"})
            assert await recv(ws) == {"handler": "item", "data": {"id": "c", "color": "red"}}
            await asyncio.to_thread(worker.delete, "catalog", "a")
            assert await recv(ws) == {"handler": "remove", "params": {"id": "a"}}
        finally:
            worker.stop()


async def test_requests_no_worker_answers_time_out(server_factory):
    srv = server_factory(config(timeout="300ms"))
    token = vhost_token(srv, "/mr")
    worker = webrocket_backend.Worker(backend_endpoint(srv), "/mr", token,
                                      heartbeat_interval=HEARTBEAT, liveness=LIVENESS)
    requests: list[dict] = []
    # A worker that takes requests and never answers.
    worker.handlers[":resource"] = lambda trigger: requests.append(trigger.data)
    worker.start()
    client = webrocket_backend.Client(backend_endpoint(srv), "/mr", token)
    try:
        async with connect(srv.url("/mr/catalog")) as ws:
            for _ in range(100):
                reply = await ask(ws, {"handler": "all"})
                assert reply["handler"] == "error" and reply["error"]["id"] == "ASSIGNATION_FAILED"
                if requests:
                    break
                await asyncio.sleep(0.05)
            assert requests, "the worker never got a request"
            assert "in time" in reply["error"]["message"], reply
            late = requests[-1]["request"]
            with pytest.raises(webrocket_backend.BackendError) as error:
                client.answer(late, {"handler": "list", "items": []})
            assert error.value.code == 404
            with pytest.raises(webrocket_backend.BackendError) as error:
                client.request("RA", b"not-a-number", b"{}")
            assert error.value.code == 400
    finally:
        client.close()
        worker.stop()
