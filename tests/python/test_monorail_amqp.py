"""MonoRail resources with `source = "amqp"`: watches fed from a RabbitMQ
topic exchange. The test starts its own `rabbitmq-server` (the Debian
package, installed by tests/run-all.sh) on free ports and publishes with
pika; it is skipped, saying so, where RabbitMQ is not installed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from backend_fixtures import free_port
from conftest import connect_resource as connect, recv, render_config, vhost

pika = pytest.importorskip("pika")

RABBITMQ = next(
    (p for p in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server") or "")
     if p and os.access(p, os.X_OK)),
    None,
)
EXCHANGE = "webrocket-test"
BOOT_TIMEOUT = 90.0


@pytest.fixture
def rabbitmq(tmp_path: Path):
    """A RabbitMQ node of its own: (host, port)."""
    if RABBITMQ is None:
        pytest.skip("rabbitmq-server is not installed (tests/run-all.sh installs it as root)")
    base = tmp_path / "rabbitmq"
    base.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(base),
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_NODENAME": f"webrocket{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "pid"),
    }
    out = open(base / "out.log", "wb")
    proc = subprocess.Popen([RABBITMQ], env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            assert proc.poll() is None, (base / "out.log").read_text(errors="replace")[-3000:]
            try:
                conn = pika.BlockingConnection(pika.ConnectionParameters(
                    host="127.0.0.1", port=port, connection_attempts=1, socket_timeout=2))
                conn.close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail("rabbitmq-server did not accept connections in time")
                time.sleep(0.5)
        yield ("127.0.0.1", port)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out.close()


class Publisher:
    def __init__(self, host: str, port: int):
        # A node that has just booted may still refuse a connection or two.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.conn = pika.BlockingConnection(pika.ConnectionParameters(host=host, port=port))
                break
            except pika.exceptions.AMQPConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.channel = self.conn.channel()
        self.channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)

    def publish(self, key: str, body, kind: str | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        props = pika.BasicProperties(type=kind) if kind else None
        self.channel.basic_publish(EXCHANGE, key, data, properties=props)

    def close(self) -> None:
        self.conn.close()


def config(port: int) -> str:
    mr = vhost("/mr", anonymous=["READ"])
    mr["resources"] = [{"name": "feed", "source": "amqp"}]
    return render_config([mr]) + f'\n[amqp]\nport = {port}\nexchange = "{EXCHANGE}"\n'


async def ask(ws, message: dict) -> dict:
    await ws.send(json.dumps(message))
    return await recv(ws)


async def test_watches_are_fed_from_a_topic_exchange(server_factory, rabbitmq):
    host, port = rabbitmq
    srv = server_factory(config(port))
    publisher = await asyncio.to_thread(Publisher, host, port)
    try:
        async with connect(srv.url("/mr/feed")) as ws:
            assert await ask(ws, {"handler": "watch", "params": {"level": "error"}}) == {
                "handler": "list", "items": []}
            reply = await ask(ws, {"handler": "all"})
            assert reply["handler"] == "error" and reply["error"]["id"] == "UNDEFINED_EVENT"

            # The node binds its queue shortly after it starts: probe until
            # a message comes through, then drain the probes with a marker.
            for n in range(200):
                await asyncio.to_thread(publisher.publish, "mr.feed", {"id": f"p{n}", "level": "error"})
                try:
                    first = json.loads(await asyncio.wait_for(ws.recv(), 0.25))
                    break
                except asyncio.TimeoutError:
                    continue
            else:
                pytest.fail("no message from the exchange reached the watcher")
            assert first["handler"] == "item" and first["data"]["id"].startswith("p")
            await asyncio.to_thread(publisher.publish, "mr.feed", {"id": "marker", "level": "error"})
            while (await recv(ws))["data"]["id"] != "marker":
                pass

            await asyncio.to_thread(publisher.publish, "mr.feed.sub", {"id": 1, "level": "info"})
            await asyncio.to_thread(publisher.publish, "other.feed", {"id": 9, "level": "error"})
            await asyncio.to_thread(publisher.publish, "mr.feed", b"not json")
            await asyncio.to_thread(publisher.publish, "mr.feed.sub", {"id": 2, "level": "error"})
            assert await recv(ws) == {"handler": "item", "data": {"id": 2, "level": "error"}}
            await asyncio.to_thread(publisher.publish, "mr.feed", {"id": 2}, "remove")
            assert await recv(ws) == {"handler": "remove", "params": {"id": 2}}
            await ws.send(json.dumps({"handler": "stop"}))
            # Answered after the stop: from here on nothing is watched.
            assert (await ask(ws, {"handler": "init"}))["handler"] == "session"
            await asyncio.to_thread(publisher.publish, "mr.feed", {"id": 3, "level": "error"})
            reply = await ask(ws, {"handler": "init"})
            assert reply["handler"] == "session", reply
    finally:
        await asyncio.to_thread(publisher.close)
