// Starts the real webrocket-server binary for the client's tests, like
// tests/python/conftest.py: a generated config, loopback ports, the ready
// line read from stdout.

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const SERVER_BIN = process.env.WEBROCKET_SERVER || join(REPO, "target/debug/webrocket-server");
const READY_TIMEOUT_MS = 30000;
const STOP_TIMEOUT_MS = 5000;

/** The config the client tests use: /chat (users without secrets; no
 * anonymous rights) and /open (anonymous READ and WRITE). */
export const CONFIG = `
[log]
level = "warn"

[[vhost]]
path = "/chat"
anonymous = []

[[vhost.user]]
name = "alice"
permissions = ["READ", "WRITE"]

[[vhost.user]]
name = "bob"
permissions = ["READ", "WRITE"]

[[vhost]]
path = "/open"
anonymous = ["READ", "WRITE"]
`;

/** A free loopback port (bound, read and closed: another process could
 * take it before the server does, so callers retry). */
export function freePort() {
  return new Promise((res, rej) => {
    const probe = createServer();
    probe.once("error", rej);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => res(port));
    });
  });
}

/** One server process with a storage dir that outlives restarts. */
export class Server {
  constructor(config = CONFIG) {
    this.dir = mkdtempSync(join(tmpdir(), "webrocket-js-"));
    this.config = config;
    this.proc = null;
    this.websocket = null;
    this.stderr = "";
    this.starts = 0;
  }

  /** Starts the server on `port` (0: any) and waits for its ready line. */
  start(port = 0) {
    this.starts += 1;
    const config = join(this.dir, `webrocket-${this.starts}.toml`);
    writeFileSync(config, this.config);
    const args = [
      "-c", config,
      "--websocket-addr", `127.0.0.1:${port}`,
      "--backend-addr", "127.0.0.1:0",
      "--admin-addr", "127.0.0.1:0",
      "--storage-dir", join(this.dir, "data"),
      "--run-dir", join(this.dir, "run"),
    ];
    const proc = spawn(SERVER_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    proc.stderr.on("data", (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    return new Promise((res, rej) => {
      let out = "";
      const timer = setTimeout(() => {
        proc.kill("SIGKILL");
        rej(new Error(`webrocket-server not ready after ${READY_TIMEOUT_MS} ms\n${this.stderr}`));
      }, READY_TIMEOUT_MS);
      proc.once("error", (e) => {
        clearTimeout(timer);
        rej(e);
      });
      proc.once("exit", (code) => {
        clearTimeout(timer);
        rej(new Error(`webrocket-server exited with ${code}\n${this.stderr}`));
      });
      proc.stdout.on("data", (chunk) => {
        out += chunk;
        const line = out.split("\n").find((l) => l.startsWith("webrocket-server ready "));
        if (!line) return;
        clearTimeout(timer);
        proc.removeAllListeners("exit");
        const fields = Object.fromEntries(
          line.split(" ").slice(2).map((kv) => kv.split("=")),
        );
        this.websocket = fields.websocket;
        this.admin = fields.admin;
        res(this);
      });
    });
  }

  /** Starts the server on a port this test picked, so that it can be
   * started again on the same port; retries when the port was taken. */
  async startOnOwnPort(attempts = 5) {
    for (let i = 0; ; i++) {
      const port = await freePort();
      try {
        return await this.start(port);
      } catch (error) {
        if (i + 1 >= attempts) throw error;
      }
    }
  }

  get port() {
    return Number(this.websocket.split(":").pop());
  }

  url(path = "/chat") {
    return `ws://${this.websocket}${path}`;
  }

  httpUrl(path = "/") {
    return `http://${this.websocket}${path}`;
  }

  /** An admin API request with the node cookie (from the storage
   * directory); resolves with `{status, body}`. */
  async adminCall(method, path, body) {
    const data = join(this.dir, "data");
    const cookie = readdirSync(data).find((f) => f.endsWith(".cookie"));
    const response = await fetch(`http://${this.admin}${path}`, {
      method,
      headers: {
        "X-WebRocket-Cookie": readFileSync(join(data, cookie), "utf8").trim(),
        "Content-Type": "application/json",
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() };
  }

  /** SIGTERM, then SIGKILL after a while; resolves once it exited. */
  stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    return new Promise((res) => {
      const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
      proc.once("exit", () => {
        clearTimeout(timer);
        res();
      });
      proc.kill("SIGTERM");
    });
  }

  /** Stops the server and removes its files. */
  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Resolves with the arguments of the next `event` of `emitter`, or rejects
 * after `ms` (a bound, so a broken test fails instead of hanging). */
export function next(emitter, event, ms = 10000) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no '${event}' within ${ms} ms`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      res(args.length <= 1 ? args[0] : args);
    });
  });
}

/** Resolves once `predicate()` holds (polled every 10 ms), or rejects
 * after `ms`. */
export function until(predicate, ms = 5000) {
  return new Promise((res, rej) => {
    const end = Date.now() + ms;
    const poll = () => {
      if (predicate()) return res();
      if (Date.now() > end) return rej(new Error("condition not met in time"));
      setTimeout(poll, 10);
    };
    poll();
  });
}
