#!/usr/bin/env python3
"""Faults: a 3-node webrocket cluster under steady load while nodes and
workers are killed (-9), frozen (SIGSTOP, later SIGCONT), restarted
(SIGTERM, start) at random, one node at a time so a majority stays; then
checks that nothing acknowledged was lost and no channel order broken.

    .venv/bin/python benches/faults.py                 # 10 minutes
    .venv/bin/python benches/faults.py --duration 60   # a short run

Load (loopback only, third-party clients):
  * subscribers: `--subscribers` WebSocket sessions per node and channel;
  * broadcasters: one session per node per `--publishers`, each sending
    `{"p": id, "s": seq}` at `--rate` per second over the channels;
  * workers: one pyzmq worker per node; "reg" triggers from DS target
    sessions tell the workers which session id each target has;
  * a backend REQ client sending DS to the targets and BC to the channels
    (one publisher id per node it talks to);
  * admin: users and channels added and deleted through the admin HTTP API
    of a node chosen at random (node cookie).

What is checked, precisely (see faults_check.py):
  * admin: every change answered 2xx is visible on every node once the
    cluster is whole again (created ones listed, deleted ones not); a
    change that got no answer or a 5xx is unknown and not checked;
  * DS: every DS answered `OK` reached the session it named, unless that
    session's connection ended afterwards (killed or restarted node);
  * broadcasts: per subscription (one connection's life), no duplicate and
    each publisher's seqs increasing; any two subscriptions of a channel
    order their common broadcasts alike (inside fault windows a
    disagreement is a "view-change reorder", which the architecture
    allows: counted, not failing); no broadcast lost 10 s or more after
    the cluster was last whole again.

Exit status 1 on any violation or if the cluster does not heal, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import faults_check as check
import harness

sys.path.insert(0, str(harness.REPO / "backend" / "python"))
import webrocket_backend  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

VHOST = "/chat"
CHANNELS = ["c0", "c1", "c2", "c3"]
COOKIE = "faults-cluster-cookie-0123456789"
HEAL_TIMEOUT = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600, help="seconds of load and faults (default 600)")
    p.add_argument("--subscribers", type=int, default=2, help="per node and channel")
    p.add_argument("--publishers", type=int, default=2, help="broadcasting sessions per node")
    p.add_argument("--rate", type=float, default=5, help="broadcasts per second per publisher")
    p.add_argument("--targets", type=int, default=3, help="DS target sessions per node")
    p.add_argument("--backend-rate", type=float, default=10, help="DS+BC requests per second")
    p.add_argument("--admin-rate", type=float, default=2, help="admin changes per second")
    p.add_argument("--fault-every", type=float, nargs=2, default=(6, 15), metavar=("MIN", "MAX"))
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    return p.parse_args(argv)


class Run:
    """Everything the load and the faults record, for the checks."""

    def __init__(self, nodes: list[harness.Node]):
        self.nodes = nodes
        self.t0 = time.monotonic()
        self.stop = threading.Event()  # load stops
        self.closing = threading.Event()  # subscribers stop (after a drain)
        self.sent: dict[tuple[str, int], check.Sent] = {}
        self.subs: list[check.Subscription] = []
        self.targets: dict[str, check.DirectTarget] = {}
        self.registry: dict[str, str] = {}  # DS target tag -> session id
        self.ds_acked: list[tuple[int, str, float]] = []
        self.ds_refused: list[tuple[int, str, float]] = []  # answered ER 404
        self.expected_admin: dict[str, bool] = {}
        self.findings: list[check.Finding] = []
        self.windows: list[tuple[float, float]] = []  # faults until healed
        self.view_changes: list[tuple[float, float]] = []  # observed, any cause
        self.count = collections.Counter()

    def now(self) -> float:
        return time.monotonic()

    def log(self, message: str) -> None:
        print(f"[{self.now() - self.t0:7.1f}s] {message}", flush=True)

    def up(self, node: harness.Node) -> bool:
        return node.alive


# ---------------------------------------------------------------------------
# WebSocket load
# ---------------------------------------------------------------------------

def open_session(url: str):
    return connect(url, open_timeout=5, ping_interval=None, max_size=None, close_timeout=1)


async def events(ws):
    """(event, body) of each message; ignores what is not one-key JSON."""
    async for raw in ws:
        message = json.loads(raw)
        if isinstance(message, dict) and len(message) == 1:
            yield next(iter(message.items()))


async def subscriber(run: Run, node: harness.Node, channel: str, index: int) -> None:
    epoch = 0
    while not run.closing.is_set():
        sub = None
        try:
            async with open_session(node.url(VHOST)) as ws:
                await ws.send(json.dumps({"subscribe": {"channel": channel}}))
                epoch += 1
                async for event, body in events_until(ws, run.closing):
                    if event == "subscribed":
                        sub = check.Subscription(f"{node.name}/{channel}/s{index}.{epoch}", node.name, channel, run.now())
                        run.subs.append(sub)
                    elif event == "m" and sub is not None and isinstance(body, dict):
                        data = body.get("data") or {}
                        sub.received.append((data.get("p"), data.get("s")))
                    elif event == "err":
                        run.count["subscribe_errors"] += 1
                        break
                if run.closing.is_set():
                    return
                raise ConnectionError("closed")
        except Exception as error:  # noqa: BLE001 - reconnect; the close is recorded
            if sub is not None:
                sub.closed_at = run.now()
                sub.close_reason = type(error).__name__
            await asyncio.sleep(0.5)


async def events_until(ws, stop: threading.Event):
    """Like `events`, but ends (without closing) once `stop` is set."""
    while not stop.is_set():
        try:
            raw = await asyncio.wait_for(ws.recv(), 0.5)
        except asyncio.TimeoutError:
            continue
        message = json.loads(raw)
        if isinstance(message, dict) and len(message) == 1:
            yield next(iter(message.items()))


async def publisher(run: Run, node: harness.Node, ident: str, rate: float) -> None:
    seq = 0
    while not run.stop.is_set():
        pending: collections.deque = collections.deque()
        try:
            async with open_session(node.url(VHOST)) as ws:

                async def acks():
                    async for event, _ in events_until(ws, run.closing):
                        if event in ("broadcasted", "err") and pending:
                            message = pending.popleft()
                            if event == "broadcasted":
                                run.sent[message].acked = True
                            else:
                                run.count["broadcast_errors"] += 1

                reader = asyncio.create_task(acks())
                try:
                    while not run.stop.is_set():
                        seq += 1
                        channel = random.choice(CHANNELS)
                        data = {"p": ident, "s": seq}
                        run.sent[(ident, seq)] = check.Sent(channel, run.now())
                        pending.append((ident, seq))
                        payload = {"broadcast": {"event": "m", "channel": channel, "data": data}}
                        await asyncio.wait_for(ws.send(json.dumps(payload)), 30)
                        await asyncio.sleep(random.expovariate(rate))
                        if reader.done():
                            raise ConnectionError("reader ended")
                    await asyncio.sleep(3)  # let the last acks arrive
                finally:
                    reader.cancel()
        except Exception:  # noqa: BLE001 - reconnect with the next seq
            run.count["publisher_reconnects"] += 1
            await asyncio.sleep(0.5)


async def ds_target(run: Run, node: harness.Node, index: int) -> None:
    epoch = 0
    while not run.closing.is_set():
        epoch += 1
        tag = f"{node.name}-t{index}.{epoch}"
        target = None
        try:
            async with open_session(node.url(VHOST)) as ws:
                target = check.DirectTarget(tag, node.name, run.now())
                run.targets[tag] = target

                async def register():
                    while not run.stop.is_set():
                        if tag not in run.registry:
                            await ws.send(json.dumps({"trigger": {"event": "reg", "data": {"tag": tag}}}))
                        await asyncio.sleep(2)

                registering = asyncio.create_task(register())
                try:
                    async for event, body in events_until(ws, run.closing):
                        if event == "ds" and isinstance(body, dict):
                            target.received.add(body.get("k"))
                finally:
                    registering.cancel()
                if run.closing.is_set():
                    return
                raise ConnectionError("closed")
        except Exception as error:  # noqa: BLE001 - reconnect as a new target
            if target is not None:
                target.closed_at = run.now()
                target.close_reason = type(error).__name__
            await asyncio.sleep(0.5)


async def websocket_load(run: Run, args: argparse.Namespace) -> None:
    tasks = []
    for node in run.nodes:
        for channel in CHANNELS:
            tasks += [subscriber(run, node, channel, i) for i in range(args.subscribers)]
        tasks += [publisher(run, node, f"{node.name}-p{i}", args.rate) for i in range(args.publishers)]
        tasks += [ds_target(run, node, i) for i in range(args.targets)]
    await asyncio.gather(*tasks)


# ---------------------------------------------------------------------------
# Backend load (threads: pyzmq is blocking)
# ---------------------------------------------------------------------------

class Workers:
    """One worker per node; `restart(i)` drops one without QT (a crash)
    and starts a new one."""

    def __init__(self, run: Run, token: str):
        self.run = run
        self.token = token
        self.workers = [self._start(node) for node in run.nodes]

    def _start(self, node: harness.Node) -> webrocket_backend.Worker:
        worker = webrocket_backend.Worker(node.backend_endpoint, VHOST, self.token, heartbeat_interval=0.5, liveness=3)

        @worker.on("reg")
        def register(trigger):
            if isinstance(trigger.data, dict) and isinstance(trigger.data.get("tag"), str):
                self.run.registry[trigger.data["tag"]] = trigger.sid

        return worker.start()

    def restart(self, i: int, down: float) -> None:
        self.workers[i].stop(quit=False)
        time.sleep(down)
        self.workers[i] = self._start(self.run.nodes[i])

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def backend_client(run: Run, token: str, rate: float) -> None:
    clients = [webrocket_backend.Client(n.backend_endpoint, VHOST, token, timeout=2.0) for n in run.nodes]
    seqs = collections.Counter()
    k = 0
    while not run.stop.is_set():
        i = random.randrange(len(clients))
        if not run.nodes[i].alive:
            time.sleep(0.05)
            continue
        if random.random() < 0.6 and run.registry:
            k += 1
            tag, sid = random.choice(list(run.registry.items()))
            run.count["ds_sent"] += 1
            try:
                clients[i].direct(sid, "ds", {"k": k})
                run.ds_acked.append((k, tag, run.now()))
            except webrocket_backend.BackendError as error:
                run.count["ds_404" if error.code == 404 else f"ds_error_{error.code}"] += 1
                if error.code == 404:
                    run.ds_refused.append((k, tag, run.now()))
        else:
            ident = f"bk-{run.nodes[i].name}"
            seqs[ident] += 1
            channel = random.choice(CHANNELS)
            message = (ident, seqs[ident])
            run.sent[message] = check.Sent(channel, run.now())
            try:
                clients[i].broadcast(channel, "m", {"p": ident, "s": seqs[ident]})
                run.sent[message].acked = True
            except webrocket_backend.BackendError as error:
                run.count[f"bc_error_{error.code}"] += 1
        time.sleep(random.expovariate(rate))
    for client in clients:
        client.close()


# ---------------------------------------------------------------------------
# Admin load
# ---------------------------------------------------------------------------

def admin_load(run: Run, rate: float) -> None:
    """Adds users `u<k>` and channels `a<k>` and deletes some acknowledged
    ones; each name is created at most once and deleted at most once."""
    segment = harness.vhost_segment(VHOST)
    k = 0
    cookies = {n.name: n.cookie() for n in run.nodes}
    acked_at: dict[str, float] = {}
    while not run.stop.is_set():
        node = random.choice([n for n in run.nodes if n.alive] or run.nodes)
        present = [name for name, there in run.expected_admin.items() if there]
        if present and random.random() < 0.3:
            name = random.choice(present)
            kind = "users" if name.startswith("u") else "channels"
            method, path, body, ok = "DELETE", f"/vhosts/{segment}/{kind}/{name}", None, 200
        else:
            k += 1
            name = f"u{k}" if k % 2 else f"a{k}"
            if name.startswith("u"):
                path, body = f"/vhosts/{segment}/users", {"name": name, "permissions": ["READ"]}
            else:
                path, body = f"/vhosts/{segment}/channels", {"name": name}
            method, ok = "POST", 201
        status, reply = harness.admin_request(node.addr("admin"), cookies[node.name], method, path, body, timeout=8)
        run.count[f"admin_{method.lower()}_{status}"] += 1
        if status == ok:
            run.expected_admin[name] = method == "POST"
            acked_at[name] = run.now()
        elif status in (404, 409):
            # Names are unique: the node denies an acknowledged change (it
            # checks its own state, which has not applied it yet). The
            # expectation stands: the final check shows whether it was lost.
            detail = (
                f"{method} {name} on {node.name} at {run.now() - run.t0:.1f}s: {status} {reply}; "
                f"created (2xx) at {acked_at.get(name, run.t0) - run.t0:.1f}s"
            )
            run.findings.append(check.Finding("admin-stale-answer", False, detail))
        else:
            run.expected_admin.pop(name, None)  # outcome unknown: not checked
        time.sleep(random.expovariate(rate))


def admin_views(run: Run) -> dict[str, set[str]] | None:
    segment = harness.vhost_segment(VHOST)
    views = {}
    for node in run.nodes:
        users_status, users = node.admin("GET", f"/vhosts/{segment}/users")
        channels_status, channels = node.admin("GET", f"/vhosts/{segment}/channels")
        if users_status != 200 or channels_status != 200:
            return None
        names = {u["name"] for u in users["users"]}
        names |= {c if isinstance(c, str) else c.get("name") for c in channels["channels"]}
        views[node.name] = names
    return views


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------

def healthy(run: Run) -> bool:
    """Every node answers, lists the others up, and one leads the log."""
    leaders = 0
    for node in run.nodes:
        if not node.alive or node.stopped:
            return False
        status, body = node.admin("GET", "/nodes", timeout=3)
        if status != 200:
            return False
        listed = body["nodes"]
        if len(listed) != len(run.nodes) or any(n["state"] != "up" for n in listed):
            return False
        leaders += listed[0].get("raft_role") == "leader"
    return leaders == 1


def watch_views(run: Run) -> None:
    """Records every span during which some node sees a peer not up (for
    any reason: a fault, or a missed heartbeat on a busy machine)."""
    since = None
    while not run.closing.is_set():
        changing = False
        for node in run.nodes:
            if not node.alive or node.stopped:
                changing = True
                break
            status, body = node.admin("GET", "/nodes", timeout=1)
            if status == 200 and any(n["state"] != "up" for n in body["nodes"]):
                changing = True
                break
        if changing and since is None:
            since = run.now()
        elif not changing and since is not None:
            run.view_changes.append((since, run.now()))
            since = None
        time.sleep(0.25)
    if since is not None:
        run.view_changes.append((since, run.now()))


def wait_healthy(run: Run) -> bool:
    deadline = time.monotonic() + HEAL_TIMEOUT
    while time.monotonic() < deadline:
        if healthy(run):
            return True
        time.sleep(0.5)
    return False


def one_fault(run: Run, workers: Workers) -> None:
    i = random.randrange(len(run.nodes))
    node = run.nodes[i]
    action = random.choices(["kill", "stop", "restart", "worker"], weights=[3, 3, 2, 2])[0]
    start = run.now()
    if action == "worker":
        down = random.uniform(0.5, 4)
        run.log(f"worker on {node.name}: dropped without QT, back in {down:.1f}s")
        workers.restart(i, down)
        run.count["worker_restarts"] += 1
        return
    if action == "kill":
        down = random.uniform(1, 6)
        run.log(f"{node.name}: kill -9, restart in {down:.1f}s")
        node.kill()
        run.count["kills"] += 1
        time.sleep(down)
        node.start()
        run.count["restarts"] += 1
    elif action == "stop":
        down = random.uniform(1, 8)
        run.log(f"{node.name}: SIGSTOP for {down:.1f}s")
        node.freeze()
        run.count["stops"] += 1
        time.sleep(down)
        node.thaw()
    else:
        run.log(f"{node.name}: SIGTERM and restart")
        node.terminate()
        node.start()
        run.count["restarts"] += 1
    healed = wait_healthy(run)
    run.windows.append((start, run.now()))
    run.log(f"cluster whole again after {run.now() - start:.1f}s" if healed else "cluster did NOT heal")
    if not healed:
        run.count["heal_failures"] += 1


def faults(run: Run, workers: Workers, every: tuple[float, float], until: float) -> None:
    while run.now() < until:
        time.sleep(random.uniform(*every))
        if run.now() >= until:
            break
        if not healthy(run):
            # Never take a second node down: wait for the first to be back.
            if not wait_healthy(run):
                run.count["heal_failures"] += 1
                run.log("cluster not whole; no more faults")
                return
        try:
            one_fault(run, workers)
        except RuntimeError as error:  # a node that would not start again
            run.count["heal_failures"] += 1
            run.log(f"fault step failed: {error}")


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def start_cluster(workdir: Path) -> list[harness.Node]:
    ports = [harness.free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        seeds = [f"127.0.0.1:{p}" for j, p in enumerate(ports) if j != i]
        extra = (
            '\n[backend]\nheartbeat_interval = "500ms"\nliveness = 3\n'
            f'\n[cluster]\naddr = "127.0.0.1:{ports[i]}"\nseeds = {json.dumps(seeds)}\n'
        )
        config = harness.config_text(
            [{"path": VHOST, "anonymous": ["READ", "WRITE"], "channels": CHANNELS}],
            server={"node_name": f"n{i}"},
            extra=extra,
        )
        nodes.append(harness.Node(workdir / f"n{i}", f"n{i}", config, env={"WEBROCKET_CLUSTER_COOKIE": COOKIE}))
    threads = [threading.Thread(target=n.start) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return nodes


def drive(run: Run, args: argparse.Namespace, token: str) -> None:
    workers = Workers(run, token)
    threads = [
        threading.Thread(target=backend_client, args=(run, token, args.backend_rate), daemon=True),
        threading.Thread(target=admin_load, args=(run, args.admin_rate), daemon=True),
        threading.Thread(target=watch_views, args=(run,), daemon=True),
    ]
    for t in threads:
        t.start()
    until = run.now() + args.duration

    def faults_then_stop():
        try:
            faults(run, workers, tuple(args.fault_every), until)
            while run.now() < until:
                time.sleep(0.2)
        finally:
            run.log("faults over; healing, then stopping the load")
            start = run.now()
            for node in run.nodes:
                if node.stopped:
                    node.thaw()
                if not node.alive:
                    node.start()
                    run.count["restarts"] += 1
            if not wait_healthy(run):
                run.count["heal_failures"] += 1
            run.windows.append((start, run.now()))
            run.stop.set()
            time.sleep(5)  # in-flight broadcasts and DS arrive
            run.closing.set()

    injector = threading.Thread(target=faults_then_stop, daemon=True)
    injector.start()
    asyncio.run(websocket_load(run, args))
    injector.join()
    for t in threads:
        t.join(15)
    workers.stop()


def converge(run: Run) -> dict[str, set[str]] | None:
    """The nodes' admin views once they agree (the last changes may still
    be applying on a follower), or the last ones seen after a timeout."""
    deadline = time.monotonic() + HEAL_TIMEOUT
    views = None
    while time.monotonic() < deadline:
        views = admin_views(run)
        if views is not None and len({frozenset(v) for v in views.values()}) == 1:
            return views
        time.sleep(1)
    return views


def report(run: Run) -> int:
    findings = list(run.findings)
    broadcast_findings, figures = check.check_broadcasts(run.subs, run.sent, run.windows + run.view_changes, run.t0)
    findings += broadcast_findings
    ds_findings, ds_figures = check.check_directs(run.ds_acked, run.targets, run.ds_refused)
    findings += ds_findings
    views = converge(run)
    if views is None:
        findings.append(check.Finding("admin-lost", False, "a node did not answer the admin API after recovery"))
        admin_figures = {"admin_acked": len(run.expected_admin), "admin_verified": 0}
    else:
        admin_findings, admin_figures = check.check_admin(run.expected_admin, views)
        findings += admin_findings
    count = run.count
    sent = len(run.sent)
    acked = sum(1 for s in run.sent.values() if s.acked)
    violations = [f for f in findings if not f.tolerated]
    tolerated = [f for f in findings if f.tolerated]
    print("\n=== faults: figures ===")
    spurious = [w for w in run.view_changes if not any(s - 1 <= w[0] <= e + 1 for s, e in run.windows)]
    print(f"faults: kills={count['kills']} stops={count['stops']} restarts={count['restarts']} "
          f"worker_restarts={count['worker_restarts']} heal_failures={count['heal_failures']} "
          f"view_changes_seen={len(run.view_changes)} without_a_fault={len(spurious)}")
    print(f"admin: changes acknowledged={admin_figures['admin_acked']} verified={admin_figures['admin_verified']} "
          f"answers={dict(sorted((k[6:], v) for k, v in count.items() if k.startswith('admin_')))}")
    print(f"DS: sent={count['ds_sent']} acked={ds_figures['ds_acked']} delivered={ds_figures['ds_delivered']} "
          f"excused(session died)={ds_figures['ds_excused_session_died']} 404={count['ds_404']} "
          f"404_for_a_live_session={ds_figures['ds_404_live']} "
          f"other={ {k: v for k, v in count.items() if k.startswith('ds_error')} }")
    print(f"broadcasts: sent={sent} acked={acked} delivered={figures['delivered']} "
          f"distinct_delivered={figures['distinct_delivered']} stable_view_losses={figures['stable_view_losses']} "
          f"subscriptions={len(run.subs)} publisher_reconnects={count['publisher_reconnects']} "
          f"bc_errors={ {k: v for k, v in count.items() if k.startswith('bc_error')} }")
    kinds = collections.Counter((f.kind, f.tolerated) for f in findings)
    print("view-change reorders (allowed): " + (", ".join(f"{k}={v}" for (k, t), v in sorted(kinds.items()) if t) or "0"))
    print("violations: " + (", ".join(f"{k}={v}" for (k, t), v in sorted(kinds.items()) if not t) or "0"))
    for f in violations[:20]:
        print(f"  VIOLATION {f.kind}: {f.detail}")
    for f in tolerated[:5]:
        print(f"  allowed {f.kind}: {f.detail}")
    if figures["losses_after_fault"]:
        print(f"  stable-view losses by time since the last fault ended: {figures['losses_after_fault']}")
    for example in figures["loss_examples"]:
        print(f"  stable-view loss: {example}")
    failed = bool(violations) or count["heal_failures"] > 0
    print(f"faults: {'FAIL' if failed else 'PASS'}")
    return 1 if failed else 0


def dump(run: Run, path: Path) -> None:
    """What the run recorded, for a closer look (`--keep`)."""
    records = {
        "t0": run.t0,
        "windows": run.windows,
        "view_changes": run.view_changes,
        "sent": [[p, s, m.channel, m.at, m.acked] for (p, s), m in run.sent.items()],
        "subs": [vars(sub) for sub in run.subs],
    }
    path.write_text(json.dumps(records))


def main() -> int:
    args = parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the nodes stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.seed is not None:
        random.seed(args.seed)
    tmp = tempfile.mkdtemp(prefix="webrocket-faults-")
    print(f"faults: work directory {tmp}; {args.duration:.0f}s", flush=True)
    nodes = start_cluster(Path(tmp))
    run = Run(nodes)
    try:
        if not wait_healthy(run):
            print("faults: the cluster never formed")
            return 1
        token = harness.vhost_token(nodes[0], VHOST)
        drive(run, args, token)
        if args.keep:
            dump(run, Path(tmp) / "records.json")
        return report(run)
    finally:
        for node in nodes:
            node.terminate()
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
