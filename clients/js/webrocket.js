// webrocket.js - the JavaScript client of webrocket.
//
// A plain ES module with no dependencies: load it in a browser
// (`import { WebRocket } from "/webrocket.js"`, served by the server itself)
// or in Node >= 18 (pass `{ WebSocket }` from the `ws` package when the
// global one is missing).
//
// Two dialects share one connection core:
// - WebRocket: the webrocket JSON protocol (man webrocket(7)): authenticate,
//   subscribe to channels, broadcast, trigger backend workers.
// - MonoRail: handler-routed messages (`{"handler": ...}`): init/session,
//   query/all/get/list/item/remove, watch/stop.
//
// Both reconnect after a close or an error they did not ask for, with a
// capped exponential backoff and jitter, then restore what the application
// had set up (credentials and channels; session and watches), and say so
// with `disconnected` and `reconnected` events. `disconnect()` does not
// reconnect.

/** Default reconnection policy: delays grow from `initialDelay` by `factor`
 * up to `maxDelay`; each is shortened by up to `jitter` (a fraction) at
 * random so that clients cut off together do not all return together. */
export const RECONNECT_DEFAULTS = Object.freeze({
  initialDelay: 250,
  maxDelay: 10000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
});

/** The delay before reconnection attempt `attempt` (0-based). */
export function backoffDelay(attempt, policy = RECONNECT_DEFAULTS, random = Math.random) {
  const base = Math.min(policy.maxDelay, policy.initialDelay * Math.pow(policy.factor, attempt));
  return Math.round(base * (1 - policy.jitter * random()));
}

/** A small event emitter (browsers have no `events` module). */
export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Calls `fn` on every `event`; returns `this`. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, []);
    this._listeners.get(event).push(fn);
    return this;
  }

  /** Calls `fn` on the next `event` only. */
  once(event, fn) {
    const wrapper = (...args) => {
      this.off(event, wrapper);
      fn(...args);
    };
    wrapper.listener = fn;
    return this.on(event, wrapper);
  }

  /** Removes `fn` (or every listener of `event` when `fn` is omitted). */
  off(event, fn) {
    const list = this._listeners.get(event);
    if (!list) return this;
    if (fn === undefined) {
      this._listeners.delete(event);
      return this;
    }
    const i = list.findIndex((l) => l === fn || l.listener === fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  }

  /** Calls the listeners of `event`; true when there was one. A listener
   * that throws does not stop the others (the error is reported). */
  emit(event, ...args) {
    const list = this._listeners.get(event);
    if (!list || list.length === 0) return false;
    for (const fn of [...list]) {
      try {
        fn(...args);
      } catch (error) {
        reportListenerError(error);
      }
    }
    return true;
  }
}

function reportListenerError(error) {
  setTimeout(() => {
    throw error;
  }, 0);
}

/** An error the server answered (`id` is the protocol's error id, e.g.
 * `ACCESS_DENIED`), or one of the client's own: `NOT_CONNECTED`,
 * `DISCONNECTED` (the connection went away before the answer). */
export class WebRocketError extends Error {
  constructor(id, message, details = {}) {
    super(message ? `${id}: ${message}` : id);
    this.name = "WebRocketError";
    this.id = id;
    this.event = details.event;
    this.channel = details.channel;
  }
}

/** The connection core: opening, reconnecting, sending JSON. Dialects
 * extend it and implement `_onOpen`, `_onMessage`, `_onDown`. */
class Connection extends Emitter {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError(
        "no WebSocket implementation: pass { WebSocket } (e.g. from the 'ws' package)",
      );
    }
    this._protocols = options.protocols;
    this._policy =
      options.reconnect === false ? null : { ...RECONNECT_DEFAULTS, ...(options.reconnect || {}) };
    this._random = options.random || Math.random;
    this.ws = null;
    this._wanted = false; // the application wants a connection
    this._attempt = 0;
    this._timer = null;
    this._everOpened = false;
  }

  /** True while the WebSocket is open. */
  get isOpen() {
    return this.ws !== null && this.ws.readyState === 1;
  }

  /** Opens the connection (again). */
  _open() {
    this._wanted = true;
    clearTimeout(this._timer);
    this._timer = null;
    const ws = this._protocols ? new this._WebSocket(this.url, this._protocols) : new this._WebSocket(this.url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.emit("open");
      this._onOpen();
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let message;
      try {
        message = JSON.parse(typeof event.data === "string" ? event.data : String(event.data));
      } catch {
        this.emit("error", new WebRocketError("INVALID_MESSAGE_FORMAT", "the server sent no JSON"));
        return;
      }
      this.emit("message", message);
      this._onMessage(message);
    };
    ws.onerror = (event) => {
      if (this.ws !== ws) return;
      this.emit("error", event && event.error ? event.error : new WebRocketError("CONNECTION_ERROR", "WebSocket error"));
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const info = { code: event.code, reason: event.reason };
      this.emit("close", info);
      this._onDown(info);
      if (this._wanted) {
        // Once per lost connection; a failed attempt only schedules the next.
        if (opened) this.emit("disconnected", info);
        this._schedule();
      }
    };
  }

  _schedule() {
    if (!this._policy || this._attempt >= this._policy.maxAttempts) {
      this._wanted = false;
      this.emit("gaveup");
      return;
    }
    const delay = backoffDelay(this._attempt, this._policy, this._random);
    this._attempt += 1;
    this.emit("reconnecting", { attempt: this._attempt, delay });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._wanted) this._open();
    }, delay);
  }

  /** The connection is up and restored: reset the backoff. */
  _up() {
    this._attempt = 0;
    const again = this._everOpened;
    this._everOpened = true;
    return again;
  }

  /** Stops reconnecting and closes the socket. */
  _close(code = 1000, reason = "") {
    this._wanted = false;
    clearTimeout(this._timer);
    this._timer = null;
    const ws = this.ws;
    if (ws && ws.readyState <= 1) ws.close(code, reason);
  }

  _send(message) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }
}

// -------------------------------------------------------------------------
// The webrocket dialect
// -------------------------------------------------------------------------

/** Reply keys of the webrocket protocol and the request each answers. */
const REPLY_OF = {
  authenticate: "authenticated",
  subscribe: "subscribed",
  unsubscribe: "unsubscribed",
  broadcast: "broadcasted",
  trigger: "triggered",
  logout: "loggedOut",
  presence: "presence",
  history: "history",
};
const REPLIES = new Set(Object.values(REPLY_OF));
/** Replies whose value is an object naming its channel. */
const OBJECT_REPLIES = new Set(["presence", "history"]);

/** A channel of a {@link WebRocket} connection. Events broadcast on it are
 * emitted by name with `(data, { user, channel, event })`; `subscribed`,
 * `unsubscribed` and `error` tell its state. */
export class Channel extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.subscribed = false;
    this.ready = null; // the promise of the last subscribe request
    /** `{offset, epoch}` of the last message received on a channel with a
     * history; sent as `since` when subscribing again after a
     * reconnection, so the server replays what was missed. */
    this.position = null;
    /** Members of a presence channel, by session id: `{sid, user}`. */
    this.members = new Map();
  }

  /** The channel's members (presence channels): resolves with
   * `[{sid, user}]`. */
  async presence() {
    const reply = await this.client._request("presence", { channel: this.name });
    return reply.members ?? [];
  }

  /** The channel's last messages (channels with a history), or those after
   * `since` (`{offset, epoch}`): resolves with the server's answer
   * `{channel, offset, epoch, recovered, messages}`. */
  history(since = null) {
    const payload = { channel: this.name };
    if (since) payload.since = since;
    return this.client._request("history", payload);
  }

  /** Broadcasts `event` with `data` to the channel's subscribers. */
  broadcast(event, data = null) {
    return this.client._request("broadcast", { event, channel: this.name, data });
  }

  /** Unsubscribes; the channel is not restored after a reconnection. */
  unsubscribe() {
    return this.client._unsubscribe(this);
  }
}

/**
 * A connection speaking the webrocket protocol to one vhost
 * (`ws://host:port/vhost`).
 *
 * Events: `connected` ({sid}), `disconnected` ({code, reason}),
 * `reconnecting` ({attempt, delay}), `reconnected` ({sid}), `error`
 * (WebRocketError or transport error), `direct` ({event, data}) for
 * messages a backend sent to this session, `message` (every message),
 * `open`, `close`, `gaveup`.
 */
export class WebRocket extends Connection {
  constructor(url, options = {}) {
    super(url, options);
    this.sid = null;
    this.user = null;
    this.channels = new Map();
    this._credentials = null;
    this._pending = []; // requests in the order they were sent
    this._connecting = null;
  }

  /** Opens the connection; resolves with the session id once the server
   * greeted it (`{"connected": {"sid": ...}}`). */
  connect() {
    if (this.sid !== null && this.isOpen) return Promise.resolve(this.sid);
    if (!this._connecting) {
      this._connecting = deferred();
      if (!this.ws) this._open();
    }
    return this._connecting.promise;
  }

  /** Authenticates as `user`; remembered for reconnections. */
  async authenticate(user, secret) {
    const payload = secret === undefined ? { user } : { user, secret };
    const name = await this._request("authenticate", payload);
    this._credentials = payload;
    this.user = name;
    return name;
  }

  /** Subscribes to `channel` (kept across reconnections). Returns the
   * channel at once; `channel.ready` resolves when the server confirmed. */
  subscribe(name) {
    let channel = this.channels.get(name);
    if (!channel) {
      channel = new Channel(this, name);
      this.channels.set(name, channel);
    }
    channel.ready = this._subscribeOne(channel);
    channel.ready.catch(() => {}); // reported as an `error` event too
    return channel;
  }

  /** Hands `event` with `data` to a backend worker. */
  trigger(event, data = null) {
    return this._request("trigger", { event, data });
  }

  /** Logs out: the session is anonymous again and every subscription is
   * dropped (by the server too). */
  async logout() {
    await this._request("logout", true);
    this._credentials = null;
    this.user = null;
    for (const channel of this.channels.values()) this._dropped(channel);
    this.channels.clear();
    return true;
  }

  /** Says goodbye and closes; no reconnection. */
  disconnect() {
    this._wanted = false;
    if (this.isOpen) this._send({ disconnect: true });
    this._close(1000, "");
    this._failPending("DISCONNECTED", "disconnected by the application");
    if (this._connecting) {
      this._connecting.reject(new WebRocketError("DISCONNECTED", "disconnected by the application"));
      this._connecting = null;
    }
  }

  async _subscribeOne(channel) {
    const payload = { channel: channel.name };
    const since = channel.position;
    if (since) payload.since = since;
    let reply;
    try {
      reply = await this._request("subscribe", payload);
    } catch (error) {
      if (error.id !== "NOT_CONNECTED" && error.id !== "DISCONNECTED") {
        this.channels.delete(channel.name);
        channel.emit("error", error);
      }
      throw error;
    }
    this._subscribedWith(channel, reply, since);
    if (!channel.subscribed) {
      channel.subscribed = true;
      channel.emit("subscribed");
    }
    return channel;
  }

  /** What a `subscribed` answer says beyond the name: members, and for a
   * subscribe with `since` whether the missed messages follow. */
  _subscribedWith(channel, reply, since) {
    if (reply === null || typeof reply !== "object") return;
    if (Array.isArray(reply.members)) {
      channel.members = new Map(reply.members.map((m) => [m.sid, m]));
    }
    const last = typeof reply.epoch === "string" ? { offset: reply.offset, epoch: reply.epoch } : null;
    if (since && typeof reply.recovered === "boolean") {
      // Recovered: the missed messages follow and move the position on.
      // Not recovered: what was missed is gone; go on from the present.
      if (!reply.recovered) channel.position = last;
      channel.emit("recovery", { recovered: reply.recovered, since, last });
    } else if (!channel.position) {
      channel.position = last;
    }
  }

  async _unsubscribe(channel) {
    this.channels.delete(channel.name);
    if (!this.isOpen || !channel.subscribed) {
      this._dropped(channel);
      return channel.name;
    }
    const name = await this._request("unsubscribe", { channel: channel.name });
    this._dropped(channel);
    return name;
  }

  _dropped(channel) {
    if (channel.subscribed) {
      channel.subscribed = false;
      channel.emit("unsubscribed");
    }
  }

  /** Sends `{event: payload}`; resolves with the reply's value or rejects
   * with a WebRocketError carrying the server's error id. */
  _request(event, payload) {
    if (!this.isOpen || this.sid === null) {
      return Promise.reject(new WebRocketError("NOT_CONNECTED", `cannot ${event} while disconnected`, { event }));
    }
    const d = deferred();
    this._pending.push({ event, payload, ...d });
    this._send({ [event]: payload });
    return d.promise;
  }

  _onOpen() {}

  _onMessage(message) {
    if (message === null || typeof message !== "object" || Array.isArray(message)) return;
    const keys = Object.keys(message);
    if (keys.length === 1 && keys[0] === "connected") {
      this._greeted(message.connected);
    } else if (typeof message.err === "string") {
      this._error(message);
    } else if (typeof message.subscribed === "string" && keys.length > 1) {
      // A subscribe answer with more to say (recovery, position, members).
      this._reply("subscribed", message.subscribed, message);
    } else if (keys.length === 1 && REPLIES.has(keys[0]) && isReplyValue(keys[0], message[keys[0]])) {
      this._reply(keys[0], message[keys[0]]);
    } else if (keys.length === 1) {
      this._event(keys[0], message[keys[0]]);
    }
  }

  _greeted(connected) {
    this.sid = connected && typeof connected.sid === "string" ? connected.sid : null;
    this.emit("connected", { sid: this.sid });
    const again = this._up();
    if (this._connecting) {
      this._connecting.resolve(this.sid);
      this._connecting = null;
    }
    if (again || this._credentials || this.channels.size > 0) this._restore(again);
  }

  /** After a reconnection (or a first connection with channels asked for
   * before it): authenticate and subscribe again, then say `reconnected`. */
  async _restore(again) {
    const sid = this.sid;
    try {
      if (this._credentials) {
        this.user = await this._request("authenticate", this._credentials);
      }
      await Promise.all([...this.channels.values()].map((c) => (c.ready = this._subscribeOne(c))));
    } catch (error) {
      this.emit("error", error);
      if (error.id === "NOT_CONNECTED" || error.id === "DISCONNECTED") return;
    }
    if (again && this.sid === sid && this.isOpen) this.emit("reconnected", { sid });
  }

  _reply(key, value, whole = null) {
    const head = this._pending[0];
    const named = OBJECT_REPLIES.has(key) ? value.channel : value;
    const matches =
      head !== undefined &&
      REPLY_OF[head.event] === key &&
      (key !== "subscribed" && key !== "unsubscribed" && !OBJECT_REPLIES.has(key)
        ? true
        : named === head.payload.channel);
    if (!matches) {
      // Unasked: a channel was closed or the user may no longer read it.
      if (key === "unsubscribed") {
        const channel = this.channels.get(value);
        if (channel) {
          this.channels.delete(value);
          this._dropped(channel);
        }
      }
      return;
    }
    this._pending.shift();
    head.resolve(whole ?? value);
  }

  _error(message) {
    const error = new WebRocketError(message.err, message.message, message);
    const head = this._pending.shift();
    if (head) head.reject(error);
    this.emit("error", error);
  }

  _event(event, data) {
    const channelName = data && typeof data === "object" && !Array.isArray(data) ? data.channel : undefined;
    const channel = typeof channelName === "string" ? this.channels.get(channelName) : undefined;
    if (channel && (event === "joined" || event === "left") && typeof data.sid === "string") {
      const member = { sid: data.sid, user: data.user ?? null };
      if (event === "joined") channel.members.set(member.sid, member);
      else channel.members.delete(member.sid);
      channel.emit(event, member);
      return;
    }
    if (channel && "data" in data) {
      const delivery = { user: data.user ?? null, channel: channelName, event };
      if (typeof data.epoch === "string" && Number.isInteger(data.offset)) {
        delivery.offset = data.offset;
        delivery.epoch = data.epoch;
        channel.position = { offset: data.offset, epoch: data.epoch };
      }
      channel.emit(event, data.data, delivery);
      return;
    }
    this.emit("direct", { event, data });
  }

  _onDown(info) {
    this.sid = null;
    for (const channel of this.channels.values()) channel.subscribed = false;
    this._failPending("DISCONNECTED", `connection closed (${info.code})`);
  }

  _failPending(id, text) {
    const pending = this._pending;
    this._pending = [];
    for (const p of pending) p.reject(new WebRocketError(id, text, { event: p.event }));
  }
}

function isReplyValue(key, value) {
  if (OBJECT_REPLIES.has(key)) return value !== null && typeof value === "object" && typeof value.channel === "string";
  return typeof value === "string" || value === true;
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// -------------------------------------------------------------------------
// The MonoRail dialect
// -------------------------------------------------------------------------

/**
 * A connection speaking MonoRail's handler-routed JSON to one resource
 * (`ws://host:port/<resource>`). Every message is `{"handler": ..., ...}`.
 *
 * - `events.on/once(event, fn)`; events: `open`, `close`, `error`,
 *   `message`, `ready`, `init` (the session id), `disconnected`,
 *   `reconnected`, and one per received handler (`session`, `list`,
 *   `item`, `remove`, `error`...), each called with the whole message.
 * - `wsConn`: the current WebSocket.
 */
export class MonoRail {
  constructor(url, options = {}) {
    this.events = new Emitter();
    this.id = null;
    this._watches = new Map(); // JSON of params -> params
    this._initWanted = false;
    this._outbox = []; // all/query/get asked while disconnected
    const self = this;
    this._conn = new (class extends Connection {
      _onOpen() {
        self._opened();
      }
      _onMessage(message) {
        self._message(message);
      }
      _onDown() {
        self.id = null;
      }
      emit(event, ...args) {
        return self.events.emit(event, ...args);
      }
    })(url, options);
  }

  /** The current WebSocket instance. */
  get wsConn() {
    return this._conn.ws;
  }

  /** Opens the connection (again). */
  connect() {
    if (!this._conn.ws) this._conn._open();
    return this;
  }

  /** Closes the connection; no reconnection. */
  disconnect() {
    this._conn._close(1000, "");
    return this;
  }

  /** Calls `callback` once the connection is open (at once when it is). */
  ready(callback) {
    if (this._conn.isOpen) callback(this);
    else this.events.once("ready", () => callback(this));
    return this;
  }

  /** Asks for a session id (`{handler: init}`); `callback(id)` gets it from
   * the server's `session`. Asked again after each reconnection. */
  init(callback) {
    this._initWanted = true;
    if (callback) this.events.once("init", callback);
    this._conn._send({ handler: "init" }); // else sent once open
    return this;
  }

  /** `{handler: all}`: the server answers `list`. */
  all() {
    return this._sendWhenReady({ handler: "all" });
  }

  /** `{handler: query, params}`: the server answers `list`. */
  query(params) {
    return this._sendWhenReady({ handler: "query", params });
  }

  /** `{handler: get, params}`: the server answers `item` or `remove`. */
  get(params) {
    return this._sendWhenReady({ handler: "get", params });
  }

  /** `{handler: watch, params}`: the server sends `list`, then `item` and
   * `remove` until `stop(params)`. Watched again after each
   * reconnection. */
  watch(params) {
    this._watches.set(JSON.stringify(params ?? null), params);
    this._conn._send({ handler: "watch", params }); // else sent once open
    return this;
  }

  /** `{handler: stop, params}`: ends a watch. */
  stop(params) {
    this._watches.delete(JSON.stringify(params ?? null));
    this._conn._send({ handler: "stop", params }); // else nothing to stop
    return this;
  }

  _sendWhenReady(message) {
    if (!this._conn._send(message)) this._outbox.push(message);
    return this;
  }

  /** On every open: ask for a session and the watches again, send what
   * waited, then say `ready` (and `reconnected` after the first time). */
  _opened() {
    const again = this._conn._up();
    if (this._initWanted) this._conn._send({ handler: "init" });
    for (const params of this._watches.values()) this._conn._send({ handler: "watch", params });
    for (const message of this._outbox.splice(0)) this._conn._send(message);
    this.events.emit("ready", this);
    if (again) this.events.emit("reconnected", this);
  }

  _message(message) {
    if (message === null || typeof message !== "object" || typeof message.handler !== "string") return;
    if (message.handler === "session") {
      this.id = message.id ?? null;
      this.events.emit("init", this.id);
    }
    this.events.emit(message.handler, message);
  }
}

export default WebRocket;
