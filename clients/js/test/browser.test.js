// A real browser (headless Chromium driven by playwright-core) loads the chat
// example from the server's own HTTP, joins a channel with the client
// library, talks with a Node client, and survives a server restart.
//
// Chromium comes from the system (CHROMIUM, default /usr/bin/chromium);
// nothing is downloaded. Without it the test is skipped with a message.

import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import WebSocket from "ws";

import { WebRocket } from "../webrocket.js";
import { Server, next } from "../test-support/server.js";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const WAIT = { timeout: 30000 };

const missing = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (set CHROMIUM or install the 'chromium' package)`;
if (missing) console.log(`browser test skipped: ${missing}`);

test("the chat example in Chromium: join, talk, survive a server restart", { skip: missing, timeout: 120000 }, async () => {
  const { chromium } = await import("playwright-core");
  const server = new Server();
  await server.startOnOwnPort();
  const port = server.port;
  const profile = mkdtempSync(join(tmpdir(), "webrocket-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
  });
  const bob = new WebRocket(server.url("/chat"), { WebSocket, reconnect: { initialDelay: 50, maxDelay: 500 } });
  try {
    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    const url = server.httpUrl("/example/chat.html?vhost=/chat&user=alice&channel=room&join=1");
    const response = await page.goto(url);
    assert.equal(response.status(), 200);
    await page.waitForSelector('body[data-status="connected"]', WAIT);
    const sid = await page.evaluate(() => window.rocket.sid);
    assert.match(sid, /^[0-9a-f]{32}$/);
    console.log(`browser: chat page loaded from ${url}, session ${sid}`);

    const library = await page.evaluate(async () => {
      const r = await fetch("/webrocket.js");
      return [r.status, r.headers.get("content-type"), r.headers.get("etag"), r.headers.get("cache-control")];
    });
    assert.equal(library[0], 200);
    assert.equal(library[1], "text/javascript; charset=utf-8");
    assert.match(library[2], /^".+"$/);
    console.log(`browser: GET /webrocket.js -> ${library.join(" | ")}`);

    await bob.connect();
    await bob.authenticate("bob");
    const bobRoom = bob.subscribe("room");
    await bobRoom.ready;

    await bobRoom.broadcast("say", { text: "hello from node" });
    await page.waitForSelector('#log li:has-text("bob: hello from node")', WAIT);
    console.log("browser: received bob's broadcast");

    const heard = next(bobRoom, "say");
    await page.fill("#say input[name=text]", "hello from the browser");
    await page.click("#say button");
    const [data, delivery] = await heard;
    assert.deepEqual(data, { text: "hello from the browser" });
    assert.equal(delivery.user, "alice");
    console.log("browser: its broadcast reached the node client as alice");

    const bobBack = next(bob, "reconnected", 30000);
    await page.evaluate(() => {
      window.closeCodes = [];
      window.rocket.on("disconnected", ({ code }) => window.closeCodes.push(code));
    });
    await server.stop();
    await page.waitForFunction(() => document.body.dataset.status.startsWith("disconnected"), null, WAIT);
    const codes = await page.evaluate(() => window.closeCodes);
    assert.deepEqual(codes, [1001], "the server's shutdown close reached the page, once");
    console.log(`browser: server stopped; the page was disconnected with ${codes.join(", ")} and retries`);
    await server.start(port);
    await page.waitForSelector('#log li.notice:has-text("reconnected")', WAIT);
    await page.waitForSelector('body[data-status="connected"]', WAIT);
    await bobBack;
    const newSid = await page.evaluate(() => window.rocket.sid);
    assert.notEqual(newSid, sid);
    const subscribed = await page.evaluate(() => window.rocket.channels.get("room").subscribed);
    assert.equal(subscribed, true);
    console.log(`browser: reconnected after the restart as session ${newSid}, resubscribed`);

    await bobRoom.broadcast("say", { text: "after the restart" });
    await page.waitForSelector('#log li:has-text("bob: after the restart")', WAIT);
    console.log("browser: received the next message after the restart");
    assert.deepEqual(pageErrors, []);
  } finally {
    bob.disconnect();
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    await server.dispose();
  }
});
