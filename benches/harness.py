"""Process and admin helpers shared by the long-running scripts in benches/
(faults.py, soak.py): start a real webrocket-server on fixed loopback ports,
signal it, read its ready line, and call its admin HTTP API with the node
cookie. Standard library only, so the scripts depend on nothing the test
venv (tests/python/requirements.txt) does not already hold.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SERVER = REPO / "target/debug/webrocket-server"
READY_TIMEOUT = 30.0
_READY = re.compile(r"^webrocket-server ready (.*)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary() -> Path:
    path = Path(os.environ.get("WEBROCKET_SERVER", DEFAULT_SERVER))
    if not path.exists():
        raise SystemExit(f"{path} not found: run `cargo build` or set WEBROCKET_SERVER")
    return path


class Node:
    """One webrocket-server process with fixed ports (so clients and workers
    find it again after a restart) and a storage dir that outlives restarts."""

    def __init__(self, workdir: Path, name: str, config_text: str, env: dict | None = None):
        self.workdir = workdir
        self.name = name
        self.config_text = config_text
        self.env = dict(os.environ, **(env or {}))
        self.storage_dir = workdir / "data"
        self.ports = {kind: free_port() for kind in ("websocket", "backend", "admin")}
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.stopped = False  # SIGSTOPped and not yet continued
        self._ready = threading.Event()
        workdir.mkdir(parents=True, exist_ok=True)

    def addr(self, kind: str) -> str:
        return f"127.0.0.1:{self.ports[kind]}"

    def url(self, path: str) -> str:
        return f"ws://{self.addr('websocket')}{path}"

    @property
    def backend_endpoint(self) -> str:
        return f"tcp://{self.addr('backend')}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Node":
        assert not self.alive, f"{self.name} already running"
        self.starts += 1
        config = self.workdir / f"{self.name}.toml"
        config.write_text(self.config_text)
        argv = [
            str(server_binary()),
            "-c", str(config),
            "--websocket-addr", self.addr("websocket"),
            "--backend-addr", self.addr("backend"),
            "--admin-addr", self.addr("admin"),
            "--storage-dir", str(self.storage_dir),
            "--run-dir", str(self.workdir / "run"),
        ]
        stderr = open(self.workdir / f"{self.name}-{self.starts}.stderr", "wb")
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=self.env
        )
        stderr.close()
        self.stopped = False
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT}s")
        return self

    def _drain(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if _READY.match(raw.decode("utf-8", "replace").rstrip("\n")):
                self._ready.set()

    def kill(self) -> None:
        """SIGKILL (a frozen process dies too)."""
        if self.alive:
            self.proc.kill()
            self.proc.wait(10)
        self.stopped = False

    def freeze(self) -> None:
        if self.alive:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.stopped = True

    def thaw(self) -> None:
        if self.alive:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.stopped = False

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (after SIGCONT), SIGKILL if it does not exit in time."""
        if not self.alive:
            return None if self.proc is None else self.proc.returncode
        self.thaw()
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    # -- admin API ---------------------------------------------------------

    def cookie(self) -> str:
        return (self.storage_dir / f"{self.name}.cookie").read_text().strip()

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """(status, parsed JSON body) of one admin request; status 0 when the
        node did not answer (refused, reset, timed out)."""
        return admin_request(self.addr("admin"), self.cookie(), method, path, body, timeout)


def admin_request(addr: str, cookie: str, method: str, path: str, body: Any = None, timeout: float = 10.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{addr}{path}", data=data, method=method)
    request.add_header("X-WebRocket-Cookie", cookie)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except (OSError, ValueError):
        return 0, None


def vhost_segment(path: str) -> str:
    return urllib.parse.quote(path, safe="")


def vhost_token(node: Node, vhost: str) -> str:
    status, body = node.admin("GET", f"/vhosts/{vhost_segment(vhost)}")
    if status != 200 or not isinstance(body, dict) or "token" not in body:
        raise RuntimeError(f"show_vhost {vhost} on {node.name}: {status} {body}")
    return body["token"]


def config_text(vhosts: list[dict], server: dict | None = None, extra: str = "") -> str:
    """A small TOML config: [server] keys, log level warn, no idle timeout,
    the vhosts (path, anonymous, channels), and `extra` sections."""
    lines = ["[server]"]
    for key, value in (server or {}).items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += ["", "[log]", 'level = "warn"', "", "[limits]", 'idle_timeout = "0"', ""]
    text = "\n".join(lines) + extra + "\n"
    for v in vhosts:
        text += (
            f'\n[[vhost]]\npath = {json.dumps(v["path"])}\n'
            f'anonymous = {json.dumps(v.get("anonymous", []))}\n'
            f'auto_create_channels = {json.dumps(v.get("auto_create_channels", True))}\n'
            f'channels = {json.dumps(v.get("channels", []))}\n'
        )
    return text


def rss_kib(pid: int, field: str = "VmRSS") -> int | None:
    """A memory figure of /proc/PID/status in KiB: VmRSS (everything
    resident, shared ring pages included) or RssAnon (private memory)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
