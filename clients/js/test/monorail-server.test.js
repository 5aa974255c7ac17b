// The MonoRail dialect of the client against the real server: a `store`
// resource whose items an operator changes through the admin API while the
// client reads and watches it.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { MonoRail } from "../webrocket.js";
import { Server, next } from "../test-support/server.js";

const CONFIG = `
[log]
level = "warn"

[[vhost]]
path = "/mr"
anonymous = ["READ"]

[[vhost.resource]]
name = "nodes"
`;

describe("MonoRail dialect against webrocket-server", () => {
  let server;
  let conn;
  const items = "/vhosts/mr/resources/nodes/items";

  before(async () => {
    server = await new Server(CONFIG).start();
    const put = await server.adminCall("PUT", items, { id: "n1", state: "up" });
    assert.equal(put.status, 200, JSON.stringify(put.body));
  });

  after(async () => {
    conn?.disconnect();
    await server.dispose();
  });

  test("init, all, query, get, then a watch follows the admin's changes until stop", async () => {
    conn = new MonoRail(server.url("/mr/nodes"), { WebSocket });
    conn.connect();
    const id = await new Promise((res) => conn.init(res));
    assert.match(id, /^[0-9a-f]{32}$/);

    const all = next(conn.events, "list");
    conn.all();
    assert.deepEqual((await all).items, [{ id: "n1", state: "up" }]);
    const queried = next(conn.events, "list");
    conn.query({ state: "down" });
    assert.deepEqual((await queried).items, []);
    const item = next(conn.events, "item");
    conn.get({ id: "n1" });
    assert.deepEqual((await item).data, { id: "n1", state: "up" });
    const gone = next(conn.events, "remove");
    conn.get({ id: "n9" });
    assert.deepEqual((await gone).params, { id: "n9" });

    const watched = next(conn.events, "list");
    conn.watch({ state: "up" });
    assert.deepEqual((await watched).items, [{ id: "n1", state: "up" }]);
    const added = next(conn.events, "item");
    assert.equal((await server.adminCall("PUT", items, { id: "n2", state: "up" })).status, 200);
    assert.deepEqual((await added).data, { id: "n2", state: "up" });
    const removed = next(conn.events, "remove");
    assert.equal((await server.adminCall("DELETE", `${items}/n2`)).status, 200);
    assert.equal((await removed).params.id, "n2");

    // After stop, changes no longer reach this session: the next message
    // it gets is the answer to a later request.
    conn.stop({ state: "up" });
    const answered = next(conn.events, "message");
    await new Promise((res) => setTimeout(res, 200));
    assert.equal((await server.adminCall("PUT", items, { id: "n3", state: "up" })).status, 200);
    conn.get({ id: "n1" });
    assert.equal((await answered).handler, "item");
    assert.equal((await answered).data.id, "n1");
  });

  test("bad requests get an error message and the session stays", async () => {
    const error = next(conn.events, "error");
    conn.query("not an object");
    const answer = await error;
    assert.equal(typeof answer.error?.id, "string", JSON.stringify(answer));
    const list = next(conn.events, "list");
    conn.all();
    assert.equal((await list).items.length, 2);
  });
});
