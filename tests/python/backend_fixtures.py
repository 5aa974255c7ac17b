"""Helpers for the backend (ZeroMQ) tests: configs with fast heartbeats, the
vhost token (read from the storage log until the admin API exists), a fixed
backend port for restart tests, and access to backend/python."""

from __future__ import annotations

import re
import socket
import sys
import time

import conftest
from conftest import REPO, Server, default_vhosts, render_config

sys.path.insert(0, str(REPO / "backend" / "python"))

import webrocket_backend  # noqa: E402

# Fast heartbeats so expiry and reconnects take well under a second.
HEARTBEAT = 0.1
LIVENESS = 3


def backend_config(heartbeat: float = HEARTBEAT, liveness: int = LIVENESS) -> str:
    """The default vhosts with a [backend] section (TOML allows it after the
    vhost arrays)."""
    return render_config(default_vhosts()) + (
        f'\n[backend]\nheartbeat_interval = "{int(heartbeat * 1000)}ms"\nliveness = {liveness}\n'
    )


def cluster_node_config(vhosts: list, name: str, port: int, seed: int | None, cookie: str) -> str:
    """`vhosts` on cluster node `name` listening on `port` (seeded by the
    node on `seed`), with fast backend heartbeats."""
    text = render_config(vhosts, server={"node_name": name})
    seeds = f'["127.0.0.1:{seed}"]' if seed is not None else "[]"
    return text + (
        f'\n[backend]\nheartbeat_interval = "{int(HEARTBEAT * 1000)}ms"\nliveness = {LIVENESS}\n'
        f'\n[cluster]\naddr = "127.0.0.1:{port}"\nseeds = {seeds}\ncookie = "{cookie}"\n'
    )


def backend_endpoint(srv: Server) -> str:
    return f"tcp://{srv.info['backend']}"


def vhost_token(srv: Server, vhost: str) -> str:
    """The vhost's current access token, from the last add_vhost or
    set_vhost_token record of the storage log."""
    log = (srv.storage_dir / "state.log").read_bytes().decode("utf-8", "replace")
    found = re.findall(r'"path":"%s","token":"([0-9a-f]{40})"' % re.escape(vhost), log)
    assert found, f"no token for {vhost} in the storage log"
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_with_backend_port(srv: Server, port: int) -> Server:
    """Starts `srv` with its backend on a fixed port (workers must find a
    restarted server at the same address). conftest's Server always passes
    `--backend-addr 127.0.0.1:0`; swap that argument while it starts."""
    popen = conftest.subprocess.Popen

    def patched(argv, *args, **kwargs):
        argv = list(argv)
        at = argv.index("--backend-addr")
        argv[at + 1] = f"127.0.0.1:{port}"
        return popen(argv, *args, **kwargs)

    conftest.subprocess.Popen = patched
    try:
        return srv.start()
    finally:
        conftest.subprocess.Popen = popen


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


__all__ = [
    "HEARTBEAT",
    "LIVENESS",
    "backend_config",
    "backend_endpoint",
    "free_port",
    "start_with_backend_port",
    "vhost_token",
    "wait_for",
    "webrocket_backend",
]
