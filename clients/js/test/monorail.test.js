// The MonoRail dialect against a small `ws` server in this test that speaks
// the message shapes of the MonoRail specification: init -> session,
// query/all -> list, get -> item | remove, watch -> list then item/remove
// until stop, errors as {"handler": "error", ...}.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";

import { MonoRail } from "../webrocket.js";
import { next, until } from "../test-support/server.js";

const ITEMS = [
  { id: "n1", name: "node one" },
  { id: "n2", name: "node two" },
];

/** The resource server: answers by the spec, remembers watches per
 * connection, and counts what it received. */
class ResourceServer {
  constructor() {
    this.received = [];
    this.sessions = 0;
    this.watchers = new Map(); // socket -> Set of JSON params
  }

  start() {
    return new Promise((res) => {
      this.wss = new WebSocketServer({ host: "127.0.0.1", port: 0 }, () => res(this));
      this.wss.on("connection", (socket, request) => {
        this.path = request.url;
        this.watchers.set(socket, new Set());
        socket.on("message", (raw) => this.handle(socket, JSON.parse(String(raw))));
        socket.on("close", () => this.watchers.delete(socket));
      });
    });
  }

  get url() {
    return `ws://127.0.0.1:${this.wss.address().port}/nodes`;
  }

  handle(socket, message) {
    this.received.push(message);
    const send = (m) => socket.send(JSON.stringify(m));
    switch (message.handler) {
      case "init":
        this.sessions += 1;
        return send({ handler: "session", id: `s${this.sessions}` });
      case "all":
        return send({ handler: "list", items: ITEMS });
      case "query":
        return send({ handler: "list", items: ITEMS.filter((i) => i.id === message.params.id) });
      case "get": {
        const item = ITEMS.find((i) => i.id === message.params.id);
        return send(item ? { handler: "item", data: item } : { handler: "remove", params: message.params });
      }
      case "watch":
        this.watchers.get(socket).add(JSON.stringify(message.params));
        return send({ handler: "list", items: ITEMS });
      case "stop":
        this.watchers.get(socket).delete(JSON.stringify(message.params));
        return undefined;
      default:
        return send({ handler: "error", message: `unknown handler ${message.handler}` });
    }
  }

  /** Sends `message` to every connection watching `params`. */
  notify(params, message) {
    for (const [socket, watches] of this.watchers) {
      if (watches.has(JSON.stringify(params))) socket.send(JSON.stringify(message));
    }
  }

  /** Drops every connection (as a restart would). */
  dropAll() {
    for (const socket of this.wss.clients) socket.terminate();
  }

  close() {
    return new Promise((res) => this.wss.close(res));
  }
}


describe("MonoRail dialect", () => {
  let server;
  const conns = [];
  const open = () => {
    const c = new MonoRail(server.url, { WebSocket, reconnect: { initialDelay: 20, maxDelay: 200 } });
    conns.push(c);
    return c;
  };

  before(async () => {
    server = await new ResourceServer().start();
  });

  after(async () => {
    for (const c of conns) c.disconnect();
    await server.close();
  });

  test("ready, then init exchanges a session id", async () => {
    const conn = open();
    const readyArg = new Promise((res) => conn.ready(res));
    conn.connect();
    assert.equal(await readyArg, conn);
    assert.equal(conn.wsConn.readyState, 1);
    assert.equal(server.path, "/nodes");
    const id = await new Promise((res) => conn.init(res));
    assert.match(id, /^s\d+$/);
    assert.equal(conn.id, id);
    // ready on an open connection calls back at once.
    let called = false;
    conn.ready(() => (called = true));
    assert.equal(called, true);
  });

  test("all, query and get answer list, item and remove as handler events", async () => {
    const conn = open().connect();
    const all = next(conn.events, "list");
    conn.all();
    assert.deepEqual((await all).items, ITEMS);
    const queried = next(conn.events, "list");
    conn.query({ id: "n2" });
    assert.deepEqual(await queried, { handler: "list", items: [ITEMS[1]] });
    const item = next(conn.events, "item");
    conn.get({ id: "n1" });
    assert.deepEqual(await item, { handler: "item", data: ITEMS[0] });
    const removed = next(conn.events, "remove");
    conn.get({ id: "gone" });
    assert.deepEqual(await removed, { handler: "remove", params: { id: "gone" } });
    const messages = [];
    conn.events.on("message", (m) => messages.push(m.handler));
    const error = next(conn.events, "error");
    conn._conn._send({ handler: "bogus" });
    assert.match((await error).message, /unknown handler/);
    assert.deepEqual(messages, ["error"]);
  });

  test("watch gets a list, then items and removes until stop", async () => {
    const conn = open().connect();
    const params = { type: "node" };
    const list = next(conn.events, "list");
    conn.watch(params);
    assert.deepEqual((await list).items, ITEMS);
    const item = next(conn.events, "item");
    server.notify(params, { handler: "item", data: { id: "n3" } });
    assert.deepEqual((await item).data, { id: "n3" });
    const removed = next(conn.events, "remove");
    server.notify(params, { handler: "remove", params: { id: "n1" } });
    assert.deepEqual((await removed).params, { id: "n1" });
    conn.stop(params);
    await until(() => server.received.some((m) => m.handler === "stop"));
    assert.deepEqual(server.received.at(-1), { handler: "stop", params });
  });

  test("after the connection drops: reconnect, init again, watch again", async () => {
    const conn = open();
    const params = { type: "sku" };
    conn.connect();
    await new Promise((res) => conn.init(res));
    const watched = next(conn.events, "list");
    conn.watch(params);
    await watched;
    const firstId = conn.id;

    const disconnected = next(conn.events, "disconnected");
    const reconnected = next(conn.events, "reconnected");
    const newSession = next(conn.events, "init");
    const newList = next(conn.events, "list");
    server.dropAll();
    await disconnected;
    await reconnected;
    const id = await newSession;
    assert.notEqual(id, firstId);
    assert.deepEqual((await newList).items, ITEMS, "the watch was sent again");
    const item = next(conn.events, "item");
    server.notify(params, { handler: "item", data: { id: "sku1" } });
    assert.deepEqual((await item).data, { id: "sku1" });
  });

  test("requests made before the connection opens are sent once it does", async () => {
    const conn = open();
    const list = next(conn.events, "list");
    conn.all();
    conn.connect();
    assert.deepEqual((await list).items, ITEMS);
  });

  test("disconnect does not reconnect", async () => {
    const conn = open().connect();
    await new Promise((res) => conn.ready(res));
    let reconnecting = false;
    conn.events.on("reconnecting", () => (reconnecting = true));
    const closed = next(conn.events, "close");
    conn.disconnect();
    assert.equal((await closed).code, 1000);
    assert.equal(conn.wsConn, null);
    assert.equal(conn._conn._timer, null);
    assert.equal(reconnecting, false);
  });
});
