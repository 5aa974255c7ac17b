#!/usr/bin/env python3
"""Soak: one webrocket-server under steady, moderate load for a long time,
sampling its resident memory (VmRSS) and open file descriptors every
`--sample` seconds, then judging whether both stayed flat.

    .venv/bin/python benches/soak.py                 # 30 minutes
    .venv/bin/python benches/soak.py --duration 120  # a short run

Load (all on loopback, third-party clients only):
  * `--subscribers` WebSocket sessions, each subscribed to one of
    `--channels` channels (round robin), reading everything;
  * `--rate` broadcasts per second from a few publisher sessions, spread
    over the channels;
  * `--triggers` triggers per second answered by a pyzmq worker with a DS
    to the session that sent it;
  * `--churn` short-lived sessions per second (connect, subscribe, one
    broadcast, close).

Flat means: after the warm-up (`--warmup` seconds, default a tenth of the
run, at least 60 s), the average of the last third of the samples is within
`--tolerance` (10 %) of the average of the first third, for RSS and for fds
alike. The script prints every sample, the figures and the verdict, and
exits 1 when either grew (or the server died), 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import harness

sys.path.insert(0, str(harness.REPO / "backend" / "python"))
import webrocket_backend  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

VHOST = "/soak"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=1800, help="seconds of load (default 1800)")
    p.add_argument("--sample", type=float, default=10, help="seconds between samples (default 10)")
    p.add_argument("--warmup", type=float, default=None, help="seconds not judged (default max(60, duration/10))")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--channels", type=int, default=50)
    p.add_argument("--rate", type=float, default=200, help="broadcasts per second")
    p.add_argument("--triggers", type=float, default=20, help="triggers per second")
    p.add_argument("--churn", type=float, default=5, help="short-lived sessions per second")
    p.add_argument("--tolerance", type=float, default=0.10)
    return p.parse_args(argv)


class Figures:
    def __init__(self) -> None:
        self.delivered = 0
        self.broadcasts = 0
        self.triggers = 0
        self.directs = 0
        self.churned = 0
        self.unexpected_closes = 0
        self.errors: dict[str, int] = {}

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def paced(rate: float, stop: asyncio.Event, action) -> None:
    """Calls `action(i)` `rate` times a second until `stop`."""
    if rate <= 0:
        return
    interval = 1.0 / rate
    start = time.monotonic()
    i = 0
    while not stop.is_set():
        await action(i)
        i += 1
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif i % 100 == 0:
            await asyncio.sleep(0)


def open_session(url: str):
    return connect(url, open_timeout=20, ping_interval=None, max_size=None, close_timeout=2)


async def subscriber(url: str, channel: str, figures: Figures, stop: asyncio.Event, ready: asyncio.Semaphore) -> None:
    """Stays subscribed until `stop`; reconnects (counted) if closed."""
    first = True
    while not stop.is_set():
        try:
            async with open_session(url) as ws:
                await ws.send(json.dumps({"subscribe": {"channel": channel}}))
                if first:
                    ready.release()
                    first = False
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 1.0)
                    except asyncio.TimeoutError:
                        continue
                    if '"channel"' in raw:
                        figures.delivered += 1
                return
        except Exception as error:  # noqa: BLE001 - counted and retried
            figures.unexpected_closes += 1
            figures.error(f"subscriber: {type(error).__name__}")
            if first:
                ready.release()
                first = False
            await asyncio.sleep(1.0)


async def drain(ws, stop: asyncio.Event, on_message) -> None:
    while not stop.is_set():
        try:
            raw = await asyncio.wait_for(ws.recv(), 1.0)
        except asyncio.TimeoutError:
            continue
        on_message(json.loads(raw))


async def publishers(url: str, channels: list[str], args, figures: Figures, stop: asyncio.Event) -> None:
    async with open_session(url) as a, open_session(url) as b:
        pubs = [a, b]

        def on_reply(message: dict) -> None:
            if "err" in message:
                figures.error(f"broadcast: {message['err']}")

        drains = [asyncio.create_task(drain(ws, stop, on_reply)) for ws in pubs]

        async def one(i: int) -> None:
            channel = channels[i % len(channels)]
            payload = {"broadcast": {"event": "tick", "channel": channel, "data": {"i": i, "pad": "x" * 64}}}
            await pubs[i % 2].send(json.dumps(payload))
            figures.broadcasts += 1

        await paced(args.rate, stop, one)
        await asyncio.gather(*drains)


async def triggerer(url: str, args, figures: Figures, stop: asyncio.Event) -> None:
    async with open_session(url) as ws:

        def on_message(message: dict) -> None:
            if "answer" in message:
                figures.directs += 1
            elif "err" in message:
                figures.error(f"trigger: {message['err']}")

        reader = asyncio.create_task(drain(ws, stop, on_message))

        async def one(i: int) -> None:
            await ws.send(json.dumps({"trigger": {"event": "work", "data": {"i": i}}}))
            figures.triggers += 1

        await paced(args.triggers, stop, one)
        await reader


async def churner(url: str, channels: list[str], args, figures: Figures, stop: asyncio.Event) -> None:
    async def short_lived() -> None:
        try:
            async with open_session(url) as ws:
                channel = random.choice(channels)
                await ws.send(json.dumps({"subscribe": {"channel": channel}}))
                await ws.send(json.dumps({"broadcast": {"event": "hi", "channel": channel, "data": None}}))
                await asyncio.sleep(random.uniform(0.1, 2.0))
            figures.churned += 1
        except Exception as error:  # noqa: BLE001 - counted
            figures.error(f"churn: {type(error).__name__}")

    tasks: set[asyncio.Task] = set()

    async def one(_: int) -> None:
        task = asyncio.create_task(short_lived())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await paced(args.churn, stop, one)
    if tasks:
        await asyncio.wait(tasks, timeout=5)


def start_worker(node: harness.Node, token: str) -> webrocket_backend.Worker:
    worker = webrocket_backend.Worker(node.backend_endpoint, VHOST, token)

    @worker.on("work")
    def work(trigger):
        try:
            worker.client.direct(trigger.sid, "answer", trigger.data)
        except webrocket_backend.BackendError:
            pass  # the session went away meanwhile

    return worker.start()


def third_averages(values: list[int]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return sum(values[:third]) / third, sum(values[-third:]) / third


async def run(args: argparse.Namespace, node: harness.Node, figures: Figures) -> list[tuple[float, int, int, int]]:
    channels = [f"ch{i}" for i in range(args.channels)]
    url = node.url(VHOST)
    stop = asyncio.Event()
    ready = asyncio.Semaphore(0)
    subs = [
        asyncio.create_task(subscriber(url, channels[i % len(channels)], figures, stop, ready))
        for i in range(args.subscribers)
    ]
    for _ in range(args.subscribers):
        await ready.acquire()
    print(f"soak: {args.subscribers} subscribers connected; load for {args.duration:.0f}s", flush=True)
    load = [
        asyncio.create_task(publishers(url, channels, args, figures, stop)),
        asyncio.create_task(triggerer(url, args, figures, stop)),
        asyncio.create_task(churner(url, channels, args, figures, stop)),
    ]
    samples: list[tuple[float, int, int, int]] = []
    start = time.monotonic()
    next_sample = start
    while time.monotonic() - start < args.duration:
        if not node.alive:
            print("soak: the server died", flush=True)
            break
        if time.monotonic() >= next_sample:
            rss, fds = harness.rss_kib(node.pid), harness.open_fds(node.pid)
            anon = harness.rss_kib(node.pid, "RssAnon") or 0
            if rss is not None and fds is not None:
                t = time.monotonic() - start
                samples.append((t, rss, fds, anon))
                print(
                    f"t={t:7.1f}s rss={rss}KiB anon={anon}KiB fds={fds} delivered={figures.delivered} "
                    f"broadcasts={figures.broadcasts} directs={figures.directs} churned={figures.churned}",
                    flush=True,
                )
            next_sample += args.sample
        await asyncio.sleep(0.5)
    stop.set()
    for task in load + subs:
        try:
            await asyncio.wait_for(task, 10)
        except Exception as error:  # noqa: BLE001 - a load task failing is reported
            figures.error(f"load task: {type(error).__name__}: {error}")
    return samples


def verdict(args: argparse.Namespace, samples: list[tuple[float, int, int, int]]) -> bool:
    warmup = args.warmup if args.warmup is not None else max(60.0, args.duration / 10)
    judged = [s for s in samples if s[0] >= warmup]
    if len(judged) < 3:
        print(f"soak: only {len(judged)} samples after the {warmup:.0f}s warm-up: cannot judge")
        return False
    flat = True
    # VmRSS and fds are judged; RssAnon (private memory, without the shared
    # ring pages the traffic touches) is shown to tell the two apart.
    for name, index in (("rss_kib", 1), ("fds", 2), ("anon_kib (shown, not judged)", 3)):
        first, last = third_averages([s[index] for s in judged])
        change = (last - first) / first if first else 0.0
        ok = change <= args.tolerance
        if index != 3:
            flat &= ok
        print(
            f"soak: {name}: first-third avg {first:.0f}, last-third avg {last:.0f}, "
            f"change {change * 100:+.1f}% (limit +{args.tolerance * 100:.0f}%) -> {'flat' if ok else 'GROWING'}"
        )
    return flat


def main() -> int:
    args = parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the nodes stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="webrocket-soak-") as tmp:
        config = harness.config_text(
            [{"path": VHOST, "anonymous": ["READ", "WRITE"], "channels": []}],
            server={"node_name": "soak"},
        )
        node = harness.Node(Path(tmp), "soak", config).start()
        figures = Figures()
        worker = None
        try:
            worker = start_worker(node, harness.vhost_token(node, VHOST))
            samples = asyncio.run(run(args, node, figures))
        finally:
            if worker is not None:
                worker.stop()
            alive = node.alive
            node.terminate()
        print(
            f"soak: figures: broadcasts={figures.broadcasts} delivered={figures.delivered} "
            f"triggers={figures.triggers} directs={figures.directs} churned={figures.churned} "
            f"unexpected_closes={figures.unexpected_closes} errors={figures.errors or 'none'}"
        )
        flat = verdict(args, samples)
        ok = flat and alive
        print(f"soak: {'PASS' if ok else 'FAIL'} (server {'alive' if alive else 'DIED'})")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
