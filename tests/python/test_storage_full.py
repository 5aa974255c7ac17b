"""A node whose storage directory fills up: admin changes are refused with
500 STORAGE and a message naming the cause, sessions and broadcasts carry
on, and changes are accepted again once space is back; what was
acknowledged survives a restart and what was refused never appears.

The storage directory is a small filesystem of its own, mounted by the
test: a tmpfs, or else a loop-mounted ext4 image. Both need root and a
working `mount` (the CI machine runs as root); elsewhere the test is
skipped with the reason. A read-only remount cannot be tested the same
way: the kernel refuses it (EBUSY) while the server holds state.log open
for appending, so the read-only case is a node started on a storage
directory that is read-only (it must refuse to start with a clear error,
not panic).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from backend_fixtures import backend_endpoint, webrocket_backend
from conftest import connect, recv, render_config, request, send, vhost

FS_SIZE = "1m"
VHOST = "%2Fchat"


def _run(*argv: str) -> bool:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def mount_small_fs(directory: Path, image: Path) -> str | None:
    """Mounts a small filesystem on `directory`; returns its kind, or None
    when neither a tmpfs nor a loop-mounted ext4 image can be mounted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    if _run("mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},mode=0700", "tmpfs", str(directory)):
        return "tmpfs"
    if shutil.which("mkfs.ext4") is None:
        return None
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    if _run("mkfs.ext4", "-q", "-F", str(image)) and _run("mount", "-o", "loop", str(image), str(directory)):
        return "ext4"
    return None


@pytest.fixture
def small_storage(server_factory, tmp_path):
    """A server (not started) whose storage dir is a small filesystem."""
    srv = server_factory(
        render_config([vhost("/chat", anonymous=["READ", "WRITE"], channels=["room"])]), start=False
    )
    kind = mount_small_fs(srv.storage_dir, tmp_path / "storage.img")
    if kind is None:
        pytest.skip("needs root and `mount` (tmpfs or a loop-mounted ext4 image) for a small filesystem")
    yield srv
    srv.stop()
    _run("umount", "-l", str(srv.storage_dir))


def admin(srv, method: str, path: str, body=None, node: str = "webrocket") -> tuple[int, dict]:
    """One admin API call to `srv`, whose node is named `node` (its cookie file)."""
    cookie = (srv.storage_dir / f"{node}.cookie").read_text().strip()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{srv.info['admin']}{path}", data=data, method=method)
    req.add_header("X-WebRocket-Cookie", cookie)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem has no space left."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (64 << 10, 4 << 10, 512, 64, 8, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    return filler


def channels(srv) -> set[str]:
    status, body = admin(srv, "GET", f"/vhosts/{VHOST}/channels")
    assert status == 200, body
    return {c if isinstance(c, str) else c["name"] for c in body["channels"]}


def assert_storage_error(status: int, body: dict) -> None:
    assert status == 500, (status, body)
    assert body["code"] == "STORAGE", body
    assert "No space left" in body["error"], body


async def test_a_full_storage_refuses_changes_and_keeps_serving(small_storage):
    srv = small_storage.start()
    status, body = admin(srv, "POST", f"/vhosts/{VHOST}/channels", {"name": "before"})
    assert status == 201, body

    async with connect(srv.url("/chat")) as sub, connect(srv.url("/chat")) as pub:
        assert await request(sub, "subscribe", {"channel": "room"}) == {"subscribed": "room"}
        filler = fill(srv.storage_dir)

        # The last page of state.log may still hold a record or two; the
        # first change that needs a new one is refused, and so is every
        # later one of the same size.
        accepted = []
        for i in range(200):
            status, body = admin(srv, "POST", f"/vhosts/{VHOST}/channels", {"name": f"full-{i:03}"})
            if status != 201:
                break
            accepted.append(f"full-{i:03}")
        assert_storage_error(status, body)
        refused = f"full-{len(accepted):03}"
        assert_storage_error(*admin(srv, "POST", f"/vhosts/{VHOST}/channels", {"name": refused}))
        assert_storage_error(*admin(srv, "DELETE", f"/vhosts/{VHOST}/channels/before"))
        assert channels(srv) == {"room", "before", *accepted}
        # A backend OC is refused too, with ER 597 (internal error).
        status, body = admin(srv, "GET", f"/vhosts/{VHOST}")
        backend = webrocket_backend.Client(backend_endpoint(srv), "/chat", body["token"])
        with pytest.raises(webrocket_backend.BackendError) as refused_oc:
            backend.open_channel("from-backend")
        assert refused_oc.value.code == 597, refused_oc.value

        # Sessions carry on: a broadcast reaches the subscriber, a new
        # session subscribes to an existing channel and receives too.
        await send(pub, "broadcast", {"event": "e", "channel": "room", "data": 1})
        assert await recv(pub) == {"broadcasted": "room"}
        assert await recv(sub) == {"e": {"channel": "room", "data": 1, "user": None}}
        async with connect(srv.url("/chat")) as late:
            assert await request(late, "subscribe", {"channel": "room"}) == {"subscribed": "room"}
            # A subscribe that would create a channel is answered with an
            # error, and the session stays usable.
            reply = await request(late, "subscribe", {"channel": "brand-new"})
            assert reply.get("err") == "INTERNAL_ERROR" and reply.get("channel") == "brand-new", reply
            await send(pub, "broadcast", {"event": "e", "channel": "room", "data": 2})
            assert await recv(pub) == {"broadcasted": "room"}
            for ws in (sub, late):
                assert await recv(ws) == {"e": {"channel": "room", "data": 2, "user": None}}

        # Space is back: changes are accepted again.
        filler.unlink()
        status, body = admin(srv, "POST", f"/vhosts/{VHOST}/channels", {"name": refused})
        assert status == 201, body
        status, body = admin(srv, "DELETE", f"/vhosts/{VHOST}/channels/before")
        assert status == 200, body
        assert await request(sub, "subscribe", {"channel": "brand-new"}) == {"subscribed": "brand-new"}
        backend.open_channel("from-backend")
        backend.close()

    expected = {"room", refused, "brand-new", "from-backend", *accepted}
    assert channels(srv) == expected
    srv.restart()
    assert channels(srv) == expected


def test_a_read_only_storage_stops_the_start_with_a_clear_error(small_storage):
    srv = small_storage.start()
    srv.stop()
    assert _run("mount", "-o", "remount,ro", str(srv.storage_dir)), "remount read-only failed"
    try:
        with pytest.raises(pytest.fail.Exception, match="exited with 1 before it was ready"):
            srv.start()
        stderr = srv.stderr_path.read_text()
        assert "Read-only file system" in stderr, stderr
        assert "temporary" not in stderr, "the error blames the storage, not a missing temp file"
        assert "panicked" not in stderr, stderr
    finally:
        _run("mount", "-o", "remount,rw", str(srv.storage_dir))
