"""The checks of benches/faults.py, on what the run recorded (no I/O).

Vocabulary: a *subscription* is one WebSocket connection's life subscribed
to one channel (a reconnect starts a new one); a *broadcast* is identified
by (publisher, seq), seq increasing per publisher; a *fault window* is the
time from a fault's start (kill, stop, graceful restart) until the cluster
is whole again (every node sees the others up and a leader exists), widened
by `VIEW_MARGIN` on both sides for failure detection (3 s) and the views to
converge.

Broadcast guarantees checked: every subscription of a channel sees its
broadcasts at most once and each publisher's in send order, always; any
two subscriptions order their common broadcasts alike. During a view
change the architecture (ARCHITECTURE.md, "Broadcasts") allows two
subscriptions to disagree around their switch points, so a pairwise
disagreement whose broadcasts were all sent inside a fault window (or a
view change the run observed) is a *view-change reorder* (counted, not a
failure); every other finding is a *violation*. Delivery is at most once,
so losses are figures, except *lasting* ones: a subscription that misses
broadcasts sent `LASTING` seconds or more after the cluster was last whole
again (no fault, no view change since) is a violation, as no documented
cause covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Seconds added to both ends of a fault window (detection + convergence).
VIEW_MARGIN = 5.0
# A broadcast counts as "should have arrived" at a subscription that was
# subscribed this long before it was sent and open this long after.
SETTLE = 2.0
# Losses of broadcasts sent this long after the cluster was last whole
# again are not the "moment" of a view change the architecture allows.
LASTING = 10.0


@dataclass
class Subscription:
    ident: str
    node: str
    channel: str
    subscribed_at: float
    closed_at: float | None = None
    close_reason: str = ""
    received: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Sent:
    channel: str
    at: float
    acked: bool = False


@dataclass
class Finding:
    kind: str  # duplicate, publisher-order, pairwise-order, ds-lost, admin-lost
    tolerated: bool
    detail: str


def in_windows(at: float, windows: list[tuple[float, float]]) -> bool:
    return any(start - VIEW_MARGIN <= at <= end + VIEW_MARGIN for start, end in windows)


def check_broadcasts(
    subs: list[Subscription], sent: dict[tuple[str, int], Sent], windows: list[tuple[float, float]], t0: float
) -> tuple[list[Finding], dict]:
    findings: list[Finding] = []
    figures = delivery_figures(subs, sent, windows, t0)
    for ident, (count, first, last) in figures.pop("lasting").items():
        findings.append(
            Finding(
                "lasting-loss",
                False,
                f"{ident} missed {count} broadcasts sent between {first - t0:.1f}s and {last - t0:.1f}s, "
                f"at least {LASTING:.0f}s after the last fault or view change",
            )
        )

    def tolerated(*messages: tuple[str, int]) -> bool:
        return all(m in sent and in_windows(sent[m].at, windows) for m in messages)

    def when(message: tuple[str, int]) -> str:
        return f" (sent at {sent[message].at - t0:.1f}s)" if message in sent else ""

    for sub in subs:
        seen: set[tuple[str, int]] = set()
        last: dict[str, int] = {}
        for message in sub.received:
            publisher, seq = message
            if message in seen:
                findings.append(Finding("duplicate", False, f"{sub.ident} got {message} twice{when(message)}"))
            seen.add(message)
            if publisher in last and seq <= last[publisher]:
                before = (publisher, last[publisher])
                findings.append(
                    Finding(
                        "publisher-order",
                        False,
                        f"{sub.ident} got {message}{when(message)} after {before}{when(before)}",
                    )
                )
            last[publisher] = max(seq, last.get(publisher, seq))
    by_channel: dict[str, list[Subscription]] = {}
    for sub in subs:
        by_channel.setdefault(sub.channel, []).append(sub)
    for members in by_channel.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                findings += pairwise(a, b, tolerated)
    return findings, figures


def pairwise(a: Subscription, b: Subscription, tolerated) -> list[Finding]:
    """Each adjacent pair of common broadcasts that `b` saw in the other
    order than `a` is one finding."""
    where = {}
    for position, message in enumerate(b.received):
        where.setdefault(message, position)
    common = [(m, where[m]) for m in dict.fromkeys(a.received) if m in where]
    findings = []
    for (m1, p1), (m2, p2) in zip(common, common[1:]):
        if p2 < p1:
            findings.append(
                Finding(
                    "pairwise-order",
                    tolerated(m1, m2),
                    f"{a.ident} saw {m1} before {m2}; {b.ident} the other way",
                )
            )
    return findings


def delivery_figures(
    subs: list[Subscription], sent: dict[tuple[str, int], Sent], windows: list[tuple[float, float]], t0: float
) -> dict:
    """Deliveries, and losses in a stable view: an acknowledged broadcast
    sent outside every fault window that a subscription of its channel,
    subscribed SETTLE before and open SETTLE after, did not get. The
    architecture promises at-most-once, so these are figures, not
    failures."""
    delivered = sum(len(s.received) for s in subs)
    reached = set()
    for sub in subs:
        reached.update(sub.received)
    received_sets = {sub.ident: set(sub.received) for sub in subs}
    stable_losses = 0
    examples = []
    # Losses by how long after the end of the last fault window they were
    # sent: tells late convergence apart from losses in a quiet cluster.
    after_fault: dict[str, int] = {}
    ends = sorted(end for _, end in windows)
    lasting: dict[str, tuple[int, float, float]] = {}
    for message, info in sent.items():
        if not info.acked or in_windows(info.at, windows):
            continue
        for sub in subs:
            if sub.channel != info.channel or sub.subscribed_at > info.at - SETTLE:
                continue
            if sub.closed_at is not None and sub.closed_at < info.at + SETTLE:
                continue
            if message not in received_sets[sub.ident]:
                stable_losses += 1
                bucket = loss_bucket(info.at, ends)
                after_fault[bucket] = after_fault.get(bucket, 0) + 1
                if since_last(info.at, ends) >= LASTING:
                    count, first, last = lasting.get(sub.ident, (0, info.at, info.at))
                    lasting[sub.ident] = (count + 1, min(first, info.at), max(last, info.at))
                if len(examples) < 5:
                    examples.append(f"{sub.ident} missed {message} ({info.channel}) sent at {info.at - t0:.1f}s")
    return {
        "delivered": delivered,
        "distinct_delivered": len(reached),
        "stable_view_losses": stable_losses,
        "loss_examples": examples,
        "losses_after_fault": after_fault,
        "lasting": lasting,
    }


def since_last(at: float, ends: list[float]) -> float:
    before = [end for end in ends if end <= at]
    return at - before[-1] if before else float("inf")


def loss_bucket(at: float, ends: list[float]) -> str:
    since = since_last(at, ends)
    if since == float("inf"):
        return "no fault before"
    for limit in (10, 15, 20, 30, 60):
        if since < limit:
            return f"<{limit}s after"
    return ">=60s after"


@dataclass
class DirectTarget:
    """One DS target session: its connection's life and the DS it got."""

    tag: str
    node: str
    opened_at: float
    closed_at: float | None = None
    close_reason: str = ""
    received: set[int] = field(default_factory=set)


def check_directs(
    acked: list[tuple[int, str, float]],
    targets: dict[str, DirectTarget],
    refused: list[tuple[int, str, float]],
) -> tuple[list[Finding], dict[str, int]]:
    """An `OK`ed DS is lost when its target session's connection stayed open
    to the end of the run and never received it. When the connection ended
    after the `OK` (its node was killed, stopped long enough to drop it,
    or restarted), a DS it did not get is excused: `OK` means the holding
    node took it for the session, and a node that dies takes its queues
    with it."""
    findings = []
    delivered = excused = 0
    for k, tag, _ in acked:
        target = targets[tag]
        if k in target.received:
            delivered += 1
        elif target.closed_at is not None:
            excused += 1
        else:
            findings.append(Finding("ds-lost", False, f"DS {k} to {tag} on {target.node}: OK but never delivered"))
    # A 404 for a session whose connection was open before the DS was sent
    # and stayed open to the end: the cluster did not find a live session.
    live_404 = sum(
        1 for _, tag, at in refused if targets[tag].closed_at is None and targets[tag].opened_at < at - 1.0
    )
    return findings, {
        "ds_acked": len(acked),
        "ds_delivered": delivered,
        "ds_excused_session_died": excused,
        "ds_404_live": live_404,
    }


def check_admin(expected: dict[str, bool], views: dict[str, set[str]]) -> tuple[list[Finding], dict[str, int]]:
    """`expected[name]` is True for an acknowledged creation not deleted
    since, False for an acknowledged deletion; `views[node]` is what each
    node lists after recovery."""
    findings = []
    verified = 0
    for name, present in expected.items():
        ok = True
        for node, view in views.items():
            if (name in view) != present:
                ok = False
                state = "missing" if present else "back"
                findings.append(Finding("admin-lost", False, f"{name}: acknowledged, but {state} on {node}"))
        verified += ok
    return findings, {"admin_acked": len(expected), "admin_verified": verified}
