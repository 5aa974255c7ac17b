#!/usr/bin/env python3
"""A chat helper worker for webrocket.

A client sends ``{"trigger": {"event": "say", "data": {"channel": "room", "text": "hi"}}}``.
This worker answers the sender directly (``DS``) with ``{"said": {"text": ...}}``
and broadcasts ``{"message": {"channel": "room", "data": {"from": <user or sid>,
"text": ...}, "user": null}}`` to the channel's subscribers (``BC``), opening
the channel first if needed.

    python3 example_worker.py --endpoint tcp://127.0.0.1:8081 --vhost /chat --token <40 hex>

The token is the vhost's access token (``webrocket-ctl show_vhost /chat``);
``WEBROCKET_TOKEN`` works too.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webrocket_backend import BackendError, Trigger, Worker  # noqa: E402


def make_worker(endpoint: str, vhost: str, token: str, **options) -> Worker:
    """The chat helper: a Worker with a ``say`` handler."""
    worker = Worker(endpoint, vhost, token, **options)

    @worker.on("say")
    def say(trigger: Trigger) -> None:
        data = trigger.data if isinstance(trigger.data, dict) else {}
        text = str(data.get("text", ""))
        channel = str(data.get("channel", "lobby"))
        worker.client.direct(trigger.sid, "said", {"text": text})
        try:
            worker.client.broadcast(channel, "message", {"from": trigger.user or trigger.sid, "text": text})
        except BackendError as error:
            if error.code != 454:
                raise
            worker.client.open_channel(channel)
            worker.client.broadcast(channel, "message", {"from": trigger.user or trigger.sid, "text": text})

    return worker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:8081")
    parser.add_argument("--vhost", default="/chat")
    parser.add_argument("--token", default=os.environ.get("WEBROCKET_TOKEN"))
    parser.add_argument("--heartbeat", type=float, default=2.0, help="seconds, as the server's heartbeat_interval")
    parser.add_argument("--liveness", type=int, default=3)
    args = parser.parse_args()
    if not args.token:
        parser.error("--token (or WEBROCKET_TOKEN) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    worker = make_worker(
        args.endpoint, args.vhost, args.token, heartbeat_interval=args.heartbeat, liveness=args.liveness
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    print(f"worker {worker.identity.decode().rsplit(':', 1)[-1]} ready on {args.endpoint}{args.vhost}", flush=True)
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
