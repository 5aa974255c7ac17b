"""Section 1 of the protocol spec, row by row and error id by error id,
spoken by the third-party `websockets` client against the real server."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from conftest import (
    SECRETS,
    ConnectionClosed,
    assert_error,
    connect,
    expect_silence,
    login,
    ping_pong,
    recv,
    recv_n,
    request,
    send,
)


# ---------------------------------------------------------------------------
# Endpoint
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nope", "/chat/", "/chat/sub", "/cha", "/CHAT", "/"])
async def test_unknown_vhost_path_is_http_404(server, path):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with connect(server.url(path)):
            pass
    assert info.value.response.status_code == 404


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_every_vhost_endpoint_upgrades(server, compression):
    for path in ("/chat", "/anon", "/strict"):
        async with connect(server.url(path), compression=compression) as ws:
            await ping_pong(ws)


# ---------------------------------------------------------------------------
# authenticate
# ---------------------------------------------------------------------------

async def test_authenticate_ok(server):
    async with connect(server.url()) as ws:
        reply = await request(ws, "authenticate", {"user": "alice", "secret": SECRETS["alice"]})
        assert reply == {"authenticated": "alice"}


async def test_authenticate_name_with_dot_at_and_dash(server):
    async with connect(server.url()) as ws:
        name = "jo.doe@example-1"
        reply = await request(ws, "authenticate", {"user": name, "secret": SECRETS[name]})
        assert reply == {"authenticated": name}


async def test_authenticate_user_without_secret_needs_none(server):
    async with connect(server.url()) as ws:
        assert await request(ws, "authenticate", {"user": "open"}) == {"authenticated": "open"}
        # The session now has that user's READ permission.
        assert await request(ws, "subscribe", {"channel": "news"}) == {"subscribed": "news"}


async def test_authenticate_user_not_found(server):
    async with connect(server.url()) as ws:
        reply = await request(ws, "authenticate", {"user": "ghost", "secret": "x"})
        assert_error(reply, "USER_NOT_FOUND", event="authenticate")
        # A user of another vhost is not a user of this one.
        reply = await request(ws, "authenticate", {"user": "manager", "secret": SECRETS["manager"]})
        assert_error(reply, "USER_NOT_FOUND", event="authenticate")


@pytest.mark.parametrize(
    "payload",
    [
        {"user": "alice", "secret": "wrong"},
        {"user": "alice", "secret": ""},
        {"user": "alice", "secret": SECRETS["bob"]},
        {"user": "alice"},
    ],
    ids=["wrong", "empty", "other-users", "missing"],
)
async def test_authenticate_invalid_credentials(server, payload):
    async with connect(server.url()) as ws:
        reply = await request(ws, "authenticate", payload)
        assert_error(reply, "INVALID_CREDENTIALS", event="authenticate")
        # Still anonymous: /chat grants anonymous nothing.
        assert_error(await request(ws, "subscribe", {"channel": "news"}), "ACCESS_DENIED", event="subscribe")


@pytest.mark.parametrize(
    "name",
    ["", "bad name", ".leading-dot", "-leading-dash", "@leading-at", "a/b", "é", "x" * 256],
    ids=["empty", "space", "dot", "dash", "at", "slash", "non-ascii", "256-bytes"],
)
async def test_authenticate_invalid_user_name(server, name):
    async with connect(server.url()) as ws:
        reply = await request(ws, "authenticate", {"user": name, "secret": "x"})
        assert_error(reply, "INVALID_USER_NAME", event="authenticate")


async def test_authenticate_255_byte_name_is_valid_but_unknown(server):
    async with connect(server.url()) as ws:
        reply = await request(ws, "authenticate", {"user": "u" * 255, "secret": "x"})
        assert_error(reply, "USER_NOT_FOUND", event="authenticate")


@pytest.mark.parametrize("payload", ["alice", 42, True, None, ["alice", "x"]])
async def test_authenticate_invalid_payload(server, payload):
    async with connect(server.url()) as ws:
        reply = await request(ws, "authenticate", payload)
        assert_error(reply, "INVALID_PAYLOAD", event="authenticate")


# ---------------------------------------------------------------------------
# subscribe
# ---------------------------------------------------------------------------

async def test_subscribe_ok_and_idempotent(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "reader")
        await login(pub, "writer")
        assert await request(ws, "subscribe", {"channel": "sub-idem"}) == {"subscribed": "sub-idem"}
        assert await request(ws, "subscribe", {"channel": "sub-idem"}) == {"subscribed": "sub-idem"}
        reply = await request(pub, "broadcast", {"event": "e", "channel": "sub-idem", "data": 1})
        assert reply == {"broadcasted": "sub-idem"}
        # Subscribed twice, delivered once.
        assert await recv(ws) == {"e": {"channel": "sub-idem", "data": 1, "user": "writer"}}
        await expect_silence(ws)


async def test_subscribe_existing_channel_from_config(server):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        assert await request(ws, "subscribe", {"channel": "news"}) == {"subscribed": "news"}


@pytest.mark.parametrize("path", ["/chat"])
async def test_subscribe_access_denied_for_anonymous_without_read(server, path):
    async with connect(server.url(path)) as ws:
        reply = await request(ws, "subscribe", {"channel": "news"})
        assert_error(reply, "ACCESS_DENIED", event="subscribe", channel="news")


@pytest.mark.parametrize("name", ["writer", "nobody"])
async def test_subscribe_access_denied_for_user_without_read(server, name):
    async with connect(server.url()) as ws:
        await login(ws, name)
        reply = await request(ws, "subscribe", {"channel": "news"})
        assert_error(reply, "ACCESS_DENIED", event="subscribe", channel="news")


BAD_CHANNELS = ["", "bad name", ".dot-first", "-dash-first", "a/b", "a:b", "ü", "c" * 256]
BAD_CHANNEL_IDS = ["empty", "space", "dot", "dash", "slash", "colon", "non-ascii", "256-bytes"]


@pytest.mark.parametrize("channel", BAD_CHANNELS, ids=BAD_CHANNEL_IDS)
async def test_subscribe_invalid_channel_name(server, channel):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        reply = await request(ws, "subscribe", {"channel": channel})
        assert_error(reply, "INVALID_CHANNEL_NAME", event="subscribe")


async def test_subscribe_longest_and_odd_valid_channel_names(server):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        for channel in ["c" * 255, "_x.y-z", "0", "A_b.C-9"]:
            assert await request(ws, "subscribe", {"channel": channel}) == {"subscribed": channel}


@pytest.mark.parametrize("payload", ["news", 1, None, ["news"]])
async def test_subscribe_invalid_payload(server, payload):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        reply = await request(ws, "subscribe", payload)
        assert_error(reply, "INVALID_PAYLOAD", event="subscribe")


async def test_subscribe_auto_creates_when_allowed(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "reader")
        await login(pub, "writer")
        # Broadcasting to a channel never creates it.
        reply = await request(pub, "broadcast", {"event": "e", "channel": "auto-new"})
        assert_error(reply, "CHANNEL_NOT_FOUND", event="broadcast", channel="auto-new")
        assert await request(ws, "subscribe", {"channel": "auto-new"}) == {"subscribed": "auto-new"}
        reply = await request(pub, "broadcast", {"event": "e", "channel": "auto-new"})
        assert reply == {"broadcasted": "auto-new"}


async def test_subscribe_without_auto_create_needs_manage(server):
    url = server.url("/strict")
    async with connect(url) as anon, connect(url) as reader, connect(url) as manager:
        await login(reader, "reader")
        await login(manager, "manager")
        for ws in (anon, reader):
            reply = await request(ws, "subscribe", {"channel": "strict-new"})
            assert_error(reply, "CHANNEL_NOT_FOUND", event="subscribe", channel="strict-new")
        # Existing channels are open to anyone with READ.
        assert await request(anon, "subscribe", {"channel": "existing"}) == {"subscribed": "existing"}
        # MANAGE creates it implicitly; afterwards READ users can subscribe.
        assert await request(manager, "subscribe", {"channel": "strict-new"}) == {"subscribed": "strict-new"}
        assert await request(reader, "subscribe", {"channel": "strict-new"}) == {"subscribed": "strict-new"}
        assert await request(anon, "subscribe", {"channel": "strict-new"}) == {"subscribed": "strict-new"}


# ---------------------------------------------------------------------------
# unsubscribe
# ---------------------------------------------------------------------------

async def test_unsubscribe_ok_stops_delivery(server):
    async with connect(server.url()) as ws, connect(server.url()) as other, connect(server.url()) as pub:
        await login(ws, "reader")
        await login(other, "bob")
        await login(pub, "writer")
        for s in (ws, other):
            assert await request(s, "subscribe", {"channel": "unsub-ok"}) == {"subscribed": "unsub-ok"}
        assert await request(ws, "unsubscribe", {"channel": "unsub-ok"}) == {"unsubscribed": "unsub-ok"}
        assert await request(pub, "broadcast", {"event": "e", "channel": "unsub-ok"}) == {"broadcasted": "unsub-ok"}
        assert await recv(other) == {"e": {"channel": "unsub-ok", "data": None, "user": "writer"}}
        await expect_silence(ws)
        # Now not subscribed any more.
        reply = await request(ws, "unsubscribe", {"channel": "unsub-ok"})
        assert_error(reply, "NOT_SUBSCRIBED", event="unsubscribe", channel="unsub-ok")


async def test_unsubscribe_not_subscribed(server):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        reply = await request(ws, "unsubscribe", {"channel": "news"})
        assert_error(reply, "NOT_SUBSCRIBED", event="unsubscribe", channel="news")


async def test_unsubscribe_channel_not_found(server):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        reply = await request(ws, "unsubscribe", {"channel": "never-existed"})
        assert_error(reply, "CHANNEL_NOT_FOUND", event="unsubscribe", channel="never-existed")


@pytest.mark.parametrize("channel", BAD_CHANNELS, ids=BAD_CHANNEL_IDS)
async def test_unsubscribe_invalid_channel_name(server, channel):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        reply = await request(ws, "unsubscribe", {"channel": channel})
        assert_error(reply, "INVALID_CHANNEL_NAME", event="unsubscribe")


async def test_unsubscribe_access_denied_without_read(server):
    async with connect(server.url()) as anon, connect(server.url()) as writer:
        await login(writer, "writer")
        for ws in (anon, writer):
            reply = await request(ws, "unsubscribe", {"channel": "news"})
            assert_error(reply, "ACCESS_DENIED", event="unsubscribe", channel="news")


@pytest.mark.parametrize("payload", ["news", 1, None, ["news"]])
async def test_unsubscribe_invalid_payload(server, payload):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        reply = await request(ws, "unsubscribe", payload)
        assert_error(reply, "INVALID_PAYLOAD", event="unsubscribe")


# ---------------------------------------------------------------------------
# broadcast
# ---------------------------------------------------------------------------

async def test_broadcast_reaches_every_subscriber_including_sender(server):
    async with connect(server.url()) as alice, connect(server.url()) as bob, connect(server.url()) as reader:
        await login(alice, "alice")
        await login(bob, "bob")
        await login(reader, "reader")
        for ws in (alice, bob, reader):
            assert await request(ws, "subscribe", {"channel": "room1"}) == {"subscribed": "room1"}
        data = {"text": "hi", "n": [1, 2.5, None, True], "nested": {"k": "ü✓"}}
        await send(alice, "broadcast", {"event": "chat", "channel": "room1", "data": data})
        delivery = {"chat": {"channel": "room1", "data": data, "user": "alice"}}
        # The sender gets its ack and its own delivery (in either order).
        got = await recv_n(alice, 2)
        assert sorted(got, key=json.dumps) == sorted([{"broadcasted": "room1"}, delivery], key=json.dumps)
        assert await recv(bob) == delivery
        assert await recv(reader) == delivery
        for ws in (alice, bob, reader):
            await expect_silence(ws, 0.1)


async def test_broadcast_data_null_when_absent_and_any_json_value(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "reader")
        await login(pub, "writer")
        assert await request(ws, "subscribe", {"channel": "data-kinds"}) == {"subscribed": "data-kinds"}
        await send(pub, "broadcast", {"event": "e", "channel": "data-kinds"})
        values = [None, 0, -1.5, "str", "", [], {}, [1, "two", {"three": 3}], True, False]
        for v in values:
            await send(pub, "broadcast", {"event": "e", "channel": "data-kinds", "data": v})
        acks = await recv_n(pub, 1 + len(values))
        assert acks == [{"broadcasted": "data-kinds"}] * (1 + len(values))
        assert await recv(ws) == {"e": {"channel": "data-kinds", "data": None, "user": "writer"}}
        for v in values:
            assert await recv(ws) == {"e": {"channel": "data-kinds", "data": v, "user": "writer"}}


async def test_broadcast_user_is_null_for_anonymous(server):
    url = server.url("/anon")
    async with connect(url) as sub, connect(url) as pub:
        assert await request(sub, "subscribe", {"channel": "lobby"}) == {"subscribed": "lobby"}
        assert await request(pub, "broadcast", {"event": "hello", "channel": "lobby", "data": "x"}) == {
            "broadcasted": "lobby"
        }
        assert await recv(sub) == {"hello": {"channel": "lobby", "data": "x", "user": None}}


async def test_broadcast_channel_and_user_cannot_be_forged(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "reader")
        await login(pub, "writer")
        assert await request(ws, "subscribe", {"channel": "forge"}) == {"subscribed": "forge"}
        forged = {"channel": "elsewhere", "user": "admin", "data": 1}
        assert await request(pub, "broadcast", {"event": "e", "channel": "forge", "data": forged}) == {
            "broadcasted": "forge"
        }
        assert await recv(ws) == {"e": {"channel": "forge", "data": forged, "user": "writer"}}


async def test_broadcast_event_names(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "reader")
        await login(pub, "writer")
        assert await request(ws, "subscribe", {"channel": "ev-names"}) == {"subscribed": "ev-names"}
        # Non-empty, at most 255 bytes, no leading ':'; anything else goes.
        for event in ["x" * 255, "with space", "ünï✓", "a:b", "subscribe", "err"]:
            reply = await request(pub, "broadcast", {"event": event, "channel": "ev-names"})
            assert reply == {"broadcasted": "ev-names"}, event
            assert await recv(ws) == {event: {"channel": "ev-names", "data": None, "user": "writer"}}
        # 85 three-byte characters are 255 bytes; 86 are 258.
        reply = await request(pub, "broadcast", {"event": "✓" * 86, "channel": "ev-names"})
        assert_error(reply, "INVALID_EVENT_NAME", event="broadcast")


@pytest.mark.parametrize("event", ["", ":internal", ":", "e" * 256], ids=["empty", "colon", "bare-colon", "256"])
async def test_broadcast_invalid_event_name(server, event):
    async with connect(server.url()) as ws:
        await login(ws, "alice")
        reply = await request(ws, "broadcast", {"event": event, "channel": "news", "data": 1})
        assert_error(reply, "INVALID_EVENT_NAME", event="broadcast")


@pytest.mark.parametrize("channel", BAD_CHANNELS, ids=BAD_CHANNEL_IDS)
async def test_broadcast_invalid_channel_name(server, channel):
    async with connect(server.url()) as ws:
        await login(ws, "alice")
        reply = await request(ws, "broadcast", {"event": "e", "channel": channel})
        assert_error(reply, "INVALID_CHANNEL_NAME", event="broadcast")


async def test_broadcast_channel_not_found(server):
    async with connect(server.url()) as ws:
        await login(ws, "alice")
        reply = await request(ws, "broadcast", {"event": "e", "channel": "no-such-channel"})
        assert_error(reply, "CHANNEL_NOT_FOUND", event="broadcast", channel="no-such-channel")


@pytest.mark.parametrize("who", [None, "reader", "nobody"])
async def test_broadcast_access_denied_without_write(server, who):
    async with connect(server.url()) as ws:
        if who:
            await login(ws, who)
        reply = await request(ws, "broadcast", {"event": "e", "channel": "news"})
        assert_error(reply, "ACCESS_DENIED", event="broadcast", channel="news")


@pytest.mark.parametrize("payload", ["news", 1, None, ["e", "news"]])
async def test_broadcast_invalid_payload(server, payload):
    async with connect(server.url()) as ws:
        await login(ws, "alice")
        reply = await request(ws, "broadcast", payload)
        assert_error(reply, "INVALID_PAYLOAD", event="broadcast")


async def test_broadcast_order_is_the_same_for_all_subscribers(server):
    async with connect(server.url()) as a, connect(server.url()) as b, connect(server.url()) as c:
        await login(a, "alice")
        await login(b, "bob")
        await login(c, "reader")
        for ws in (a, b, c):
            assert await request(ws, "subscribe", {"channel": "order"}) == {"subscribed": "order"}
        n = 100

        async def publish(ws, name):
            for i in range(n):
                await send(ws, "broadcast", {"event": "m", "channel": "order", "data": [name, i]})

        await asyncio.gather(publish(a, "alice"), publish(b, "bob"))

        async def deliveries(ws, count):
            out = []
            while len(out) < count:
                msg = await recv(ws)
                if "m" in msg:
                    out.append(msg["m"]["data"])
                else:
                    assert msg == {"broadcasted": "order"}, msg
            return out

        seen_a, seen_b, seen_c = await asyncio.gather(
            deliveries(a, 2 * n), deliveries(b, 2 * n), deliveries(c, 2 * n)
        )
        assert seen_a == seen_b == seen_c
        # Each sender's messages keep the order it sent them in.
        for name in ("alice", "bob"):
            assert [i for who, i in seen_c if who == name] == list(range(n))


# ---------------------------------------------------------------------------
# trigger
# ---------------------------------------------------------------------------

async def test_trigger_without_workers_is_assignation_failed(server):
    async with connect(server.url()) as ws:
        await login(ws, "writer")
        reply = await request(ws, "trigger", {"event": "do-something", "data": {"x": 1}})
        assert_error(reply, "ASSIGNATION_FAILED", event="trigger")
        reply = await request(ws, "trigger", {"event": "no-data"})
        assert_error(reply, "ASSIGNATION_FAILED", event="trigger")


@pytest.mark.parametrize("who", [None, "reader", "nobody"])
async def test_trigger_access_denied_without_write(server, who):
    async with connect(server.url()) as ws:
        if who:
            await login(ws, who)
        reply = await request(ws, "trigger", {"event": "do", "data": 1})
        assert_error(reply, "ACCESS_DENIED", event="trigger")


@pytest.mark.parametrize("event", ["", ":internal", "e" * 256], ids=["empty", "colon", "256"])
async def test_trigger_invalid_event_name(server, event):
    async with connect(server.url()) as ws:
        await login(ws, "writer")
        reply = await request(ws, "trigger", {"event": event, "data": 1})
        assert_error(reply, "INVALID_EVENT_NAME", event="trigger")


@pytest.mark.parametrize("payload", ["do", 1, None, ["do"]])
async def test_trigger_invalid_payload(server, payload):
    async with connect(server.url()) as ws:
        await login(ws, "writer")
        reply = await request(ws, "trigger", payload)
        assert_error(reply, "INVALID_PAYLOAD", event="trigger")


# ---------------------------------------------------------------------------
# logout
# ---------------------------------------------------------------------------

async def test_logout_unsubscribes_everything(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "alice")
        await login(pub, "writer")
        channels = ["logout-a", "logout-b", "news"]
        for ch in channels:
            assert await request(ws, "subscribe", {"channel": ch}) == {"subscribed": ch}
        await send(ws, "logout", True)
        # The seed only promises the unsubscription; an implementation may
        # report each dropped channel before the reply.
        reported = []
        while (msg := await recv(ws)) != {"loggedOut": True}:
            assert set(msg) == {"unsubscribed"} and msg["unsubscribed"] in channels, msg
            reported.append(msg["unsubscribed"])
        assert len(reported) in (0, len(channels)), reported
        for ch in channels:
            assert await request(pub, "broadcast", {"event": "e", "channel": ch}) == {"broadcasted": ch}
        await expect_silence(ws)
        # Back to anonymous rights (none on /chat).
        assert_error(await request(ws, "subscribe", {"channel": "news"}), "ACCESS_DENIED", event="subscribe")
        assert_error(await request(ws, "logout", True), "ACCESS_DENIED", event="logout")
        # And a new login works.
        await login(ws, "bob")


async def test_logout_keeps_anonymous_rights(server):
    url = server.url("/strict")
    async with connect(url) as ws:
        await login(ws, "reader")
        assert await request(ws, "subscribe", {"channel": "existing"}) == {"subscribed": "existing"}
        await send(ws, "logout", True)
        while (msg := await recv(ws)) != {"loggedOut": True}:
            assert msg == {"unsubscribed": "existing"}, msg
        # Anonymous READ on /strict: the session may subscribe again.
        assert await request(ws, "subscribe", {"channel": "existing"}) == {"subscribed": "existing"}


async def test_logout_not_authenticated_is_access_denied(server):
    async with connect(server.url()) as ws:
        reply = await request(ws, "logout", True)
        assert_error(reply, "ACCESS_DENIED", event="logout")


@pytest.mark.parametrize("payload", ["yes", 1, {"now": True}, [True]])
async def test_logout_invalid_payload(server, payload):
    async with connect(server.url()) as ws:
        await login(ws, "alice")
        reply = await request(ws, "logout", payload)
        assert_error(reply, "INVALID_PAYLOAD", event="logout")
        # Still logged in.
        assert await request(ws, "subscribe", {"channel": "news"}) == {"subscribed": "news"}


# ---------------------------------------------------------------------------
# re-authentication
# ---------------------------------------------------------------------------

async def test_reauthenticate_as_user_without_read_drops_subscriptions(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "alice")
        await login(pub, "bob")
        channels = ["reauth-a", "reauth-b", "reauth-c"]
        for ch in channels:
            assert await request(ws, "subscribe", {"channel": ch}) == {"subscribed": ch}
        await send(ws, "authenticate", {"user": "writer", "secret": SECRETS["writer"]})
        got = await recv_n(ws, 1 + len(channels))
        assert {"authenticated": "writer"} in got, got
        dropped = sorted(m["unsubscribed"] for m in got if "unsubscribed" in m)
        assert dropped == channels, got
        assert all(m == {"authenticated": "writer"} or set(m) == {"unsubscribed"} for m in got), got
        for ch in channels:
            assert await request(pub, "broadcast", {"event": "e", "channel": ch}) == {"broadcasted": ch}
        await expect_silence(ws)
        # The new user's rights apply: WRITE yes, READ no.
        assert await request(ws, "broadcast", {"event": "e", "channel": "news"}) == {"broadcasted": "news"}
        assert_error(await request(ws, "subscribe", {"channel": "news"}), "ACCESS_DENIED", event="subscribe")


async def test_reauthenticate_as_user_with_read_keeps_subscriptions(server):
    async with connect(server.url()) as ws, connect(server.url()) as pub:
        await login(ws, "alice")
        await login(pub, "writer")
        assert await request(ws, "subscribe", {"channel": "reauth-keep"}) == {"subscribed": "reauth-keep"}
        # Exactly one reply, no unsubscribed notices.
        await login(ws, "reader")
        await expect_silence(ws, 0.2)
        assert await request(pub, "broadcast", {"event": "e", "channel": "reauth-keep"}) == {
            "broadcasted": "reauth-keep"
        }
        assert await recv(ws) == {"e": {"channel": "reauth-keep", "data": None, "user": "writer"}}
        # Deliveries name the current user of the sending session.
        await login(ws, "alice")
        await send(ws, "broadcast", {"event": "x", "channel": "reauth-keep"})
        got = await recv_n(ws, 2)
        assert {"broadcasted": "reauth-keep"} in got, got
        assert {"x": {"channel": "reauth-keep", "data": None, "user": "alice"}} in got, got


# ---------------------------------------------------------------------------
# disconnect
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("who", [None, "alice"])
async def test_disconnect_closes_with_1000(server, who):
    async with connect(server.url()) as ws:
        if who:
            await login(ws, who)
            assert await request(ws, "subscribe", {"channel": "news"}) == {"subscribed": "news"}
        await send(ws, "disconnect", True)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None, "no close frame from the server"
        assert info.value.rcvd.code == 1000
        # Then the TCP connection closes.
        await asyncio.wait_for(ws.wait_closed(), 5)


@pytest.mark.parametrize("payload", ["now", 1, {}, None])
async def test_disconnect_invalid_payload(server, payload):
    async with connect(server.url()) as ws:
        reply = await request(ws, "disconnect", payload)
        assert_error(reply, "INVALID_PAYLOAD", event="disconnect")
        await ping_pong(ws)


# ---------------------------------------------------------------------------
# Message format
# ---------------------------------------------------------------------------

BAD_FORMATS = [
    "not json",
    "{",
    '{"subscribe": {"channel": "news"}',
    "[1, 2]",
    '[{"subscribe": {"channel": "news"}}]',
    '"subscribe"',
    "42",
    "null",
    "true",
    "{}",
    '{"subscribe": {"channel": "news"}, "logout": true}',
    '{"a": 1, "b": 2}',
    "",
]


@pytest.mark.parametrize("text", BAD_FORMATS)
async def test_invalid_message_format_text(server, text):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        await ws.send(text)
        reply = await recv(ws)
        assert_error(reply, "INVALID_MESSAGE_FORMAT")
        # The connection stays open and the session keeps its user.
        assert await request(ws, "subscribe", {"channel": "news"}) == {"subscribed": "news"}


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\xfd", b'{"subscribe": {"channel": "n\xc3"}}', b"\xc0\xaf", b"\x00\x01binary"],
    ids=["garbage", "truncated-utf8", "overlong", "control-bytes"],
)
async def test_invalid_message_format_binary(server, data):
    async with connect(server.url()) as ws:
        await ws.send(data)
        reply = await recv(ws)
        assert_error(reply, "INVALID_MESSAGE_FORMAT")
        await ping_pong(ws)


async def test_binary_message_with_utf8_json_is_accepted(server):
    async with connect(server.url()) as ws:
        await login(ws, "reader")
        await ws.send(json.dumps({"subscribe": {"channel": "bin-ok"}}).encode())
        assert await recv(ws) == {"subscribed": "bin-ok"}


@pytest.mark.parametrize("event", ["explode", "authenticated", "Subscribe", "err", ""])
async def test_undefined_event(server, event):
    async with connect(server.url()) as ws:
        reply = await request(ws, event, {"channel": "news"})
        assert_error(reply, "UNDEFINED_EVENT", event=event)
        await ping_pong(ws)


async def test_connection_stays_open_after_many_errors(server):
    async with connect(server.url()) as ws:
        for text in BAD_FORMATS:
            await ws.send(text)
        await ws.send(b"\xff")
        await send(ws, "nope", 1)
        await send(ws, "authenticate", {"user": "ghost", "secret": "x"})
        await send(ws, "subscribe", {"channel": "news"})
        await send(ws, "logout", True)
        replies = await recv_n(ws, len(BAD_FORMATS) + 5)
        expected = ["INVALID_MESSAGE_FORMAT"] * (len(BAD_FORMATS) + 1) + [
            "UNDEFINED_EVENT",
            "USER_NOT_FOUND",
            "ACCESS_DENIED",
            "ACCESS_DENIED",
        ]
        assert [r.get("err") for r in replies] == expected, replies
        await login(ws, "alice")
        assert await request(ws, "subscribe", {"channel": "news"}) == {"subscribed": "news"}


async def test_replies_come_in_request_order(server):
    async with connect(server.url()) as ws:
        # Pipelined without waiting: no request id, so order is the contract.
        batch = [
            ("authenticate", {"user": "alice", "secret": SECRETS["alice"]}),
            ("subscribe", {"channel": "po-1"}),
            ("subscribe", {"channel": "bad name"}),
            ("subscribe", {"channel": "po-2"}),
            ("unsubscribe", {"channel": "po-1"}),
            ("unsubscribe", {"channel": "po-1"}),
            ("broadcast", {"event": "e", "channel": "po-3"}),
            ("trigger", {"event": "t"}),
            ("what", True),
            ("logout", True),
            ("subscribe", {"channel": "po-2"}),
        ]
        for event, payload in batch:
            await send(ws, event, payload)
        got = await recv_n(ws, len(batch))
        assert got[0] == {"authenticated": "alice"}
        assert got[1] == {"subscribed": "po-1"}
        assert got[2]["err"] == "INVALID_CHANNEL_NAME"
        assert got[3] == {"subscribed": "po-2"}
        assert got[4] == {"unsubscribed": "po-1"}
        assert got[5]["err"] == "NOT_SUBSCRIBED"
        assert got[6]["err"] == "CHANNEL_NOT_FOUND"
        assert got[7]["err"] == "ASSIGNATION_FAILED"
        assert got[8]["err"] == "UNDEFINED_EVENT"
        rest = got[9:]
        # logout may report po-2 as unsubscribed before its reply.
        if rest[0] == {"unsubscribed": "po-2"}:
            rest = rest[1:] + [await recv(ws)]
        assert rest[0] == {"loggedOut": True}
        assert rest[1]["err"] == "ACCESS_DENIED"
