// The webrocket dialect against the real server (target/debug/webrocket-server).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { WebRocket, WebRocketError, backoffDelay, RECONNECT_DEFAULTS } from "../webrocket.js";
import { Server, next } from "../test-support/server.js";

const FAST = { initialDelay: 50, maxDelay: 500 };

function client(server, path = "/chat", options = {}) {
  return new WebRocket(server.url(path), { WebSocket, reconnect: FAST, ...options });
}

describe("webrocket dialect", () => {
  let server;
  const clients = [];
  const open = (...args) => {
    const c = client(server, ...args);
    clients.push(c);
    return c;
  };

  before(async () => {
    server = await new Server().start();
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await server.dispose();
  });

  test("connect resolves with the session id the server greets with", async () => {
    const rocket = open();
    const connected = next(rocket, "connected");
    const sid = await rocket.connect();
    assert.match(sid, /^[0-9a-f]{32}$/);
    assert.equal(rocket.sid, sid);
    assert.deepEqual(await connected, { sid });
    assert.equal(await rocket.connect(), sid, "connect again is the same session");
  });

  test("authenticate, subscribe, broadcast and receive with the sender's name", async () => {
    const alice = open();
    const bob = open();
    await Promise.all([alice.connect(), bob.connect()]);
    assert.equal(await alice.authenticate("alice"), "alice");
    assert.equal(await bob.authenticate("bob"), "bob");
    const room = bob.subscribe("room");
    assert.equal(await room.ready, room);
    assert.equal(room.subscribed, true);
    const aliceRoom = alice.subscribe("room");
    await aliceRoom.ready;
    const heard = next(room, "say");
    assert.equal(await aliceRoom.broadcast("say", { text: "hi" }), "room");
    const [data, delivery] = await heard;
    assert.deepEqual(data, { text: "hi" });
    assert.deepEqual(delivery, { user: "alice", channel: "room", event: "say" });
    assert.equal(await room.unsubscribe(), "room");
    assert.equal(room.subscribed, false);
    assert.equal(bob.channels.has("room"), false);
  });

  test("errors reject with the protocol's error id and are emitted", async () => {
    const rocket = open();
    await rocket.connect();
    const emitted = next(rocket, "error");
    await assert.rejects(rocket.authenticate("nobody-here"), (e) => {
      assert.ok(e instanceof WebRocketError);
      assert.equal(e.id, "USER_NOT_FOUND");
      assert.equal(e.event, "authenticate");
      return true;
    });
    assert.equal((await emitted).id, "USER_NOT_FOUND");
    // Anonymous sessions on /chat may not read.
    const channel = rocket.subscribe("secret");
    const channelError = next(channel, "error");
    await assert.rejects(channel.ready, { id: "ACCESS_DENIED" });
    assert.equal((await channelError).id, "ACCESS_DENIED");
    assert.equal(rocket.channels.has("secret"), false);
    // No worker takes triggers here.
    await rocket.authenticate("alice");
    await assert.rejects(rocket.trigger("job", { n: 1 }), { id: "ASSIGNATION_FAILED" });
  });

  test("requests while disconnected reject with NOT_CONNECTED", async () => {
    const rocket = open();
    await assert.rejects(rocket.trigger("x"), { id: "NOT_CONNECTED" });
  });

  test("logout drops the subscriptions and the credentials", async () => {
    const rocket = open("/chat");
    await rocket.connect();
    await rocket.authenticate("alice");
    const news = rocket.subscribe("news");
    await news.ready;
    const dropped = next(news, "unsubscribed");
    assert.equal(await rocket.logout(), true);
    await dropped;
    assert.equal(rocket.user, null);
    assert.equal(rocket.channels.size, 0);
  });

  test("disconnect closes without reconnecting", async () => {
    const rocket = open();
    await rocket.connect();
    let reconnecting = false;
    rocket.on("reconnecting", () => (reconnecting = true));
    const closed = next(rocket, "close");
    rocket.disconnect();
    const info = await closed;
    assert.equal(info.code, 1000);
    // A clean close schedules nothing: no timer is left, no new socket.
    assert.equal(rocket._timer, null);
    assert.equal(rocket.ws, null);
    assert.equal(reconnecting, false);
  });

  test("unasked messages from backends are 'direct' events", () => {
    const rocket = new WebRocket("ws://127.0.0.1:1/x", { WebSocket });
    const seen = [];
    rocket.on("direct", (m) => seen.push(m));
    rocket._onMessage({ result: { n: 1 } });
    rocket._onMessage({ note: "text" });
    assert.deepEqual(seen, [
      { event: "result", data: { n: 1 } },
      { event: "note", data: "text" },
    ]);
  });
});

describe("reconnection", () => {
  test("backoff grows, is capped, and jitter only shortens it", () => {
    const policy = { ...RECONNECT_DEFAULTS, initialDelay: 100, maxDelay: 1000, jitter: 0.5 };
    assert.deepEqual(
      [0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, policy, () => 0)),
      [100, 200, 400, 800, 1000, 1000],
    );
    assert.equal(backoffDelay(2, policy, () => 1), 200);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(3, policy);
      assert.ok(d >= 400 && d <= 800, String(d));
    }
  });

  test("after a server restart: reconnect, authenticate, resubscribe, get the next message", async () => {
    const server = new Server();
    await server.startOnOwnPort();
    const port = server.port;
    const rocket = client(server);
    try {
      const firstSid = await rocket.connect();
      await rocket.authenticate("alice");
      const room = rocket.subscribe("lobby");
      await room.ready;

      const disconnected = next(rocket, "disconnected");
      const reconnected = next(rocket, "reconnected", 30000);
      await server.stop();
      const info = await disconnected;
      assert.equal(info.code, 1001, "shutdown closes with 1001");
      await server.start(port);
      const { sid } = await reconnected;
      assert.notEqual(sid, firstSid);
      assert.equal(rocket.user, "alice");
      assert.equal(room.subscribed, true);

      const other = client(server);
      await other.connect();
      await other.authenticate("bob");
      const heard = next(room, "after-restart");
      await other.subscribe("lobby").broadcast("after-restart", 42);
      const [data, delivery] = await heard;
      assert.equal(data, 42);
      assert.equal(delivery.user, "bob");
      other.disconnect();
    } finally {
      rocket.disconnect();
      await server.dispose();
    }
  });
});
