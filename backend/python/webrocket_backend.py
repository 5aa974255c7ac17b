"""A small pyzmq library for webrocket backends (spec section 2).

Two kinds of sockets talk to the server's ROUTER endpoint:

* :class:`Worker` - a DEALER that joins its vhost's lobby (``RD``), keeps
  heartbeats going both ways (``HB``) and receives triggers (``TR``), which it
  dispatches by event name to handlers. When the server goes silent for
  ``liveness`` heartbeat intervals (or says ``QT``), the worker drops its
  socket, connects again and sends ``RD``: a restarted server is rejoined
  without help.
* :class:`Client` - a REQ socket for requests: broadcast (``BC``), open and
  close channels (``OC``/``CC``) and direct messages to one session (``DS``).
  Each request gets exactly one reply; errors raise :class:`BackendError`.

Identities are ``dlr:<vhost>:<token>:<uuid>`` and ``req:<vhost>:<token>:<uuid>``;
the token is the vhost's access token (``webrocket-ctl show_vhost``).

Example::

    worker = Worker("tcp://127.0.0.1:8081", "/chat", token)

    @worker.on("hello")
    def hello(trigger):
        worker.client.direct(trigger.sid, "hi", {"to": trigger.user})

    worker.run()        # or worker.start() for a background thread
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import zmq

__all__ = ["BackendError", "Client", "Trigger", "Worker", "identity"]

log = logging.getLogger("webrocket_backend")

# Defaults of the server's [backend] section.
HEARTBEAT_INTERVAL = 2.0
LIVENESS = 3
# Reconnect back-off after the server went silent.
RECONNECT_MIN = 0.05
RECONNECT_MAX = 2.0

ERROR_NAMES = {
    400: "bad request",
    402: "bad identity or token",
    403: "forbidden",
    404: "no such session",
    451: "invalid channel name",
    454: "channel not found",
    597: "internal error",
}


def identity(kind: str, vhost: str, token: str, uid: Optional[str] = None) -> bytes:
    """The routing id of a backend socket: kind is ``"dlr"`` or ``"req"``."""
    if kind not in ("dlr", "req"):
        raise ValueError("kind must be 'dlr' or 'req'")
    return f"{kind}:{vhost}:{token}:{uid or uuidlib.uuid4()}".encode()


class BackendError(Exception):
    """The server answered ``ER <code>``, or did not answer in time
    (``code`` None)."""

    def __init__(self, code: Optional[int], command: str):
        self.code = code
        self.command = command
        reason = ERROR_NAMES.get(code, "no reply") if code is not None else "no reply"
        super().__init__(f"{command}: ER {code} ({reason})" if code else f"{command}: {reason}")


def _encode(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class Client:
    """Requests to the server over a REQ socket. Not thread-safe: use one
    per thread. After a timeout the socket is replaced (a REQ socket that
    missed its reply cannot send again)."""

    def __init__(
        self,
        endpoint: str,
        vhost: str,
        token: str,
        *,
        timeout: float = 5.0,
        context: Optional[zmq.Context] = None,
    ):
        self.endpoint = endpoint
        self.vhost = vhost
        self.token = token
        self.timeout = timeout
        self.context = context or zmq.Context.instance()
        self._socket: Optional[zmq.Socket] = None

    def _connect(self) -> zmq.Socket:
        if self._socket is None:
            sock = self.context.socket(zmq.REQ)
            sock.setsockopt(zmq.IDENTITY, identity("req", self.vhost, self.token))
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self._socket = sock
        return self._socket

    def request(self, command: str, *args: bytes) -> None:
        """Sends one request; returns on ``OK``, raises on ``ER`` or timeout."""
        sock = self._connect()
        sock.send_multipart([command.encode(), *args])
        if not sock.poll(int(self.timeout * 1000)):
            self.close()
            raise BackendError(None, command)
        reply = sock.recv_multipart()
        if reply[:1] == [b"OK"]:
            return
        if reply[:1] == [b"ER"] and len(reply) == 2:
            raise BackendError(int(reply[1]), command)
        raise BackendError(None, f"{command} (unexpected reply {reply!r})")

    def broadcast(self, channel: str, event: str, data: Any = None) -> None:
        """``BC``: every subscriber of ``channel`` gets
        ``{event: {"channel", "data", "user": null}}``."""
        self.request("BC", channel.encode(), event.encode(), _encode(data))

    def broadcast_except(
        self, channel: str, event: str, data: Any = None, skip: Optional[list] = None
    ) -> None:
        """``BS``: like ``broadcast``, on every node, but the sessions whose
        ids ``skip`` lists do not get it (not ordered with ``BC``)."""
        skip_frame = _encode(list(skip)) if skip else b""
        self.request("BS", channel.encode(), event.encode(), _encode(data), skip_frame)

    def open_channel(self, channel: str) -> None:
        """``OC``: creates ``channel`` (no error if it exists)."""
        self.request("OC", channel.encode())

    def close_channel(self, channel: str) -> None:
        """``CC``: deletes ``channel``; its subscribers are unsubscribed."""
        self.request("CC", channel.encode())

    def direct(self, sid: str, event: str, data: Any = None) -> None:
        """``DS``: sends ``{event: data}`` to the session ``sid``; raises
        ``BackendError`` with code 404 if there is no such session."""
        self.request("DS", sid.encode(), event.encode(), _encode(data))

    def put_item(self, resource: str, item: Any) -> None:
        """``PI``: creates or replaces an item of a MonoRail resource (a
        JSON object holding the resource's id field); watchers get it."""
        self.request("PI", resource.encode(), _encode(item))

    def remove_item(self, resource: str, item_id: Any) -> None:
        """``RI``: removes the item with that id; watchers get a ``remove``.
        Raises ``BackendError`` 404 when there is no such item."""
        self.request("RI", resource.encode(), str(item_id).encode())

    def resource_broadcast(
        self, resource: Optional[str], message: dict, skip: Optional[list] = None
    ) -> None:
        """``RB``: sends ``message`` (a JSON object with a ``handler``) to
        every session of ``resource`` (``None``: of every resource of the
        vhost) but the session ids in ``skip``."""
        skip_frame = _encode(list(skip)) if skip else b""
        self.request("RB", (resource or "").encode(), _encode(message), skip_frame)

    def answer(self, request: str, message: dict) -> None:
        """``RA``: answers request ``request`` of a ``backend`` resource with
        the message for the session (``list``, ``item``, ``remove`` or
        ``error``). Raises ``BackendError`` 404 when it no longer waits."""
        self.request("RA", str(request).encode(), _encode(message))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None


@dataclass
class Trigger:
    """One ``TR``: a client's ``trigger`` event."""

    event: str
    data: Any
    sid: str
    user: Optional[str]


Handler = Callable[[Trigger], None]


class Worker:
    """A backend worker: joins the vhost's lobby and handles triggers.

    ``run()`` loops in the calling thread until ``stop()``; ``start()`` runs
    it in a daemon thread. Handlers run in that thread, one at a time; a
    handler that raises is logged and the worker carries on. ``client`` is a
    :class:`Client` for the same vhost, owned by the worker's thread.
    """

    def __init__(
        self,
        endpoint: str,
        vhost: str,
        token: str,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        liveness: int = LIVENESS,
        context: Optional[zmq.Context] = None,
        uid: Optional[str] = None,
    ):
        self.endpoint = endpoint
        self.vhost = vhost
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.liveness = liveness
        self.context = context or zmq.Context.instance()
        self.identity = identity("dlr", vhost, token, uid)
        self.handlers: Dict[str, Handler] = {}
        self.default_handler: Optional[Handler] = None
        self.on_error: Optional[Callable[[int], None]] = None
        self.client = Client(endpoint, vhost, token, context=self.context)
        self.triggers = 0
        self.connects = 0
        self.last_error: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._socket: Optional[zmq.Socket] = None

    # -- handlers ------------------------------------------------------------

    def on(self, event: str, handler: Optional[Handler] = None):
        """Registers ``handler`` for triggers of ``event`` (usable as a
        decorator)."""

        def register(fn: Handler) -> Handler:
            self.handlers[event] = fn
            return fn

        return register(handler) if handler is not None else register

    def on_resource(self, handler: Callable[[dict], dict]):
        """Serves the requests of ``backend`` MonoRail resources:
        ``handler(request)`` gets ``{"request", "resource", "handler",
        "params", "sid", "user"}`` and returns the message for the session
        (``{"handler": "list", "items": [...]}`` and so on), which is sent
        back with ``RA``. A handler that raises answers an ``error``."""

        def serve(trigger: Trigger) -> None:
            request = dict(trigger.data) if isinstance(trigger.data, dict) else {}
            request.update(sid=trigger.sid, user=trigger.user)
            try:
                message = handler(request)
            except Exception as error:  # the session must still get an answer
                log.exception("resource handler failed")
                message = {"handler": "error", "error": {
                    "id": "INTERNAL_ERROR", "code": 500, "message": str(error)[:200]}}
            try:
                self.client.answer(request.get("request", ""), message)
            except BackendError as error:
                log.info("answer not taken: %s", error)

        self.handlers[":resource"] = serve
        return handler

    def dispatch(self, payload: bytes) -> None:
        message = json.loads(payload)
        if not isinstance(message, dict) or len(message) != 1:
            log.warning("trigger with unexpected shape: %r", payload[:200])
            return
        ((event, body),) = message.items()
        body = body if isinstance(body, dict) else {}
        trigger = Trigger(event, body.get("data"), body.get("sid", ""), body.get("user"))
        handler = self.handlers.get(event, self.default_handler)
        self.triggers += 1
        if handler is None:
            log.info("no handler for trigger %r", event)
            return
        try:
            handler(trigger)
        except Exception:  # a handler bug must not kill the worker
            log.exception("handler for %r failed", event)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self.run, name=f"worker-{self.identity[-8:].decode()}", daemon=True)
        self._thread.start()
        return self

    def stop(self, quit: bool = True, timeout: float = 5.0) -> None:
        """Stops the loop; with ``quit`` the server is told ``QT`` first."""
        self._quit_on_stop = quit
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        sock.send_multipart([b"", b"RD"])
        self.connects += 1
        return sock

    def run(self) -> None:
        self._quit_on_stop = True
        sock = self._connect()
        liveness = self.liveness
        interval = self.heartbeat_interval
        backoff = RECONNECT_MIN
        next_beat = time.monotonic() + interval
        silent_since = time.monotonic()
        try:
            while not self._stop.is_set():
                timeout = max(0.0, min(next_beat - time.monotonic(), 0.1))
                if sock.poll(int(timeout * 1000)):
                    frames = sock.recv_multipart()
                    liveness = self.liveness
                    silent_since = time.monotonic()
                    backoff = RECONNECT_MIN
                    if self._handle(frames) == "reconnect":
                        sock.close(0)
                        sock = self._connect()
                elif time.monotonic() - silent_since >= interval:
                    liveness -= 1
                    silent_since = time.monotonic()
                    if liveness <= 0:
                        # The server is gone or has forgotten us: start over.
                        log.info("server silent; reconnecting in %.2fs", backoff)
                        sock.close(0)
                        if self._stop.wait(backoff):
                            return
                        backoff = min(backoff * 2, RECONNECT_MAX)
                        sock = self._connect()
                        liveness = self.liveness
                        silent_since = time.monotonic()
                if time.monotonic() >= next_beat:
                    sock.send_multipart([b"", b"HB"])
                    next_beat = time.monotonic() + interval
        finally:
            if self._quit_on_stop:
                try:
                    sock.send_multipart([b"", b"QT"], zmq.NOBLOCK)
                    time.sleep(0.05)  # let the QT leave before the socket closes
                except zmq.ZMQError:
                    pass
            sock.close(0)
            self.client.close()

    def _handle(self, frames: list) -> Optional[str]:
        if len(frames) < 2 or frames[0] != b"":
            log.warning("unexpected frames from server: %r", frames[:3])
            return None
        command = frames[1]
        if command == b"TR" and len(frames) == 3:
            self.dispatch(frames[2])
        elif command == b"HB":
            pass
        elif command == b"QT":
            # The server left or dropped us; join again.
            return "reconnect"
        elif command == b"ER" and len(frames) == 3:
            self.last_error = int(frames[2])
            log.warning("server error %s", self.last_error)
            if self.on_error is not None:
                self.on_error(self.last_error)
        elif command == b"OK":
            pass
        else:
            log.warning("unexpected command from server: %r", frames[1:3])
        return None
