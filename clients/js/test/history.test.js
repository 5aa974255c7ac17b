// History, recovery and presence through the client against the real
// server: a channel that keeps its messages and tracks its members.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { WebRocket } from "../webrocket.js";
import { Server, next, until } from "../test-support/server.js";

const CONFIG = `
[log]
level = "warn"

[[vhost]]
path = "/live"
anonymous = ["READ", "WRITE"]
history_size = 100
presence = true
`;

describe("history, recovery and presence", () => {
  let server;
  const clients = [];
  const open = (reconnect = { initialDelay: 400, maxDelay: 1000, jitter: 0 }) => {
    const c = new WebRocket(server.url("/live"), { WebSocket, reconnect });
    clients.push(c);
    return c;
  };

  before(async () => {
    server = await new Server(CONFIG).start();
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await server.dispose();
  });

  test("members are listed, and joined and left are told", async () => {
    const a = open();
    const b = open();
    await Promise.all([a.connect(), b.connect()]);
    const aRoom = a.subscribe("members");
    await aRoom.ready;
    const joined = next(aRoom, "joined");
    const bRoom = b.subscribe("members");
    await bRoom.ready;
    assert.deepEqual(await joined, { sid: b.sid, user: null });
    assert.deepEqual([...bRoom.members.keys()].sort(), [a.sid, b.sid].sort());
    assert.deepEqual((await aRoom.presence()).map((m) => m.sid).sort(), [a.sid, b.sid].sort());
    const left = next(aRoom, "left");
    const gone = b.sid;
    b.disconnect();
    assert.equal((await left).sid, gone);
    assert.deepEqual([...aRoom.members.keys()], [a.sid]);
  });

  test("after a dropped connection the missed messages arrive once, in order", async () => {
    const reader = open();
    const writer = open();
    await Promise.all([reader.connect(), writer.connect()]);
    const room = reader.subscribe("news");
    await room.ready;
    const news = writer.subscribe("news");
    await news.ready;
    const got = [];
    room.on("m", (data, delivery) => got.push([data.n, delivery.offset]));
    for (let n = 1; n <= 3; n++) await news.broadcast("m", { n });
    await until(() => got.length === 3);
    assert.equal(room.position.offset, got[2][1]);

    // The reader's connection drops (no close handshake); while it is
    // away 5 more messages go out.
    const recovery = next(room, "recovery");
    reader.ws.terminate();
    for (let n = 4; n <= 8; n++) await news.broadcast("m", { n });
    const { recovered } = await recovery;
    assert.equal(recovered, true);
    await news.broadcast("m", { n: 9 });
    await until(() => got.length === 9);
    assert.deepEqual(got.map(([n]) => n), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const offsets = got.map(([, offset]) => offset);
    assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), "consecutive offsets");

    const history = await room.history();
    assert.deepEqual(history.messages.length, 9);
  });
});
