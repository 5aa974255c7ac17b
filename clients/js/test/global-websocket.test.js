// The client with the runtime's own WebSocket (Node >= 22, or Node 20 with
// --experimental-websocket): no constructor passed in.

import assert from "node:assert/strict";
import { test } from "node:test";

import { WebRocket } from "../webrocket.js";
import { Server } from "../test-support/server.js";

const missing = typeof globalThis.WebSocket === "function" ? false : "this Node has no global WebSocket";

test("the global WebSocket is used when none is passed", { skip: missing }, async () => {
  const server = await new Server().start();
  const rocket = new WebRocket(server.url("/open"), { reconnect: false });
  try {
    assert.match(await rocket.connect(), /^[0-9a-f]{32}$/);
    const channel = rocket.subscribe("global");
    await channel.ready;
    const heard = new Promise((res) => channel.once("e", (data, delivery) => res([data, delivery])));
    await channel.broadcast("e", { a: 1 });
    assert.deepEqual(await heard, [{ a: 1 }, { user: null, channel: "global", event: "e" }]);
  } finally {
    rocket.disconnect();
    await server.dispose();
  }
});
