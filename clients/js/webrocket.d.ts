// TypeScript declarations of webrocket.js, the JavaScript client of webrocket.

/** Reconnection policy: delays grow from `initialDelay` (ms) by `factor` up
 * to `maxDelay`, each shortened by up to `jitter` (0..1) at random. */
export interface ReconnectPolicy {
  initialDelay: number;
  maxDelay: number;
  factor: number;
  jitter: number;
  maxAttempts: number;
}

export declare const RECONNECT_DEFAULTS: Readonly<ReconnectPolicy>;

/** The delay (ms) before reconnection attempt `attempt` (0-based). */
export declare function backoffDelay(
  attempt: number,
  policy?: ReconnectPolicy,
  random?: () => number,
): number;

/** Anything constructed like the browser's WebSocket (e.g. the `ws` package). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

export interface ConnectionOptions {
  /** The WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor | any;
  /** Sub-protocols to offer, in order of preference. */
  protocols?: string | string[];
  /** `false`: never reconnect; otherwise overrides of RECONNECT_DEFAULTS. */
  reconnect?: false | Partial<ReconnectPolicy>;
  /** Source of randomness for the jitter (tests). */
  random?: () => number;
}

export type Listener = (...args: any[]) => void;

export declare class Emitter {
  on(event: string, fn: Listener): this;
  once(event: string, fn: Listener): this;
  off(event: string, fn?: Listener): this;
  emit(event: string, ...args: any[]): boolean;
}

/** An error id of the protocol (`ACCESS_DENIED`, `CHANNEL_NOT_FOUND`...) or
 * of the client (`NOT_CONNECTED`, `DISCONNECTED`). */
export declare class WebRocketError extends Error {
  readonly id: string;
  /** The client event that failed, when known. */
  readonly event?: string;
  /** The channel concerned, when known. */
  readonly channel?: string;
  constructor(id: string, message?: string, details?: { event?: string; channel?: string });
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface Delivery {
  /** The sender's user name, or null for an anonymous sender or a backend. */
  user: string | null;
  channel: string;
  event: string;
  /** The message's position, on a channel with a history. */
  offset?: number;
  epoch?: string;
}

/** A message's place in a channel's history. */
export interface Position {
  offset: number;
  epoch: string;
}

/** A session subscribed to a presence channel. */
export interface Member {
  sid: string;
  user: string | null;
}

/** What a subscribe with `since` (after a reconnection) found. */
export interface Recovery {
  /** true: the missed messages follow, in order; false: they are gone
   * (the application should reload). */
  recovered: boolean;
  since: Position;
  /** The channel's last position when it answered. */
  last: Position | null;
}

/** The answer to `history`. */
export interface HistoryAnswer {
  channel: string;
  offset?: number;
  epoch?: string;
  recovered?: boolean;
  messages: unknown[];
}

/** A channel of a WebRocket connection. Broadcast events are emitted by name
 * with `(data, delivery)`; `subscribed`, `unsubscribed` and `error` tell its
 * state. */
export declare class Channel extends Emitter {
  readonly client: WebRocket;
  readonly name: string;
  /** Whether the server confirmed the subscription on this connection. */
  readonly subscribed: boolean;
  /** Resolves when the last subscribe request was confirmed. */
  ready: Promise<Channel> | null;
  /** The last message received on a channel with a history; sent as
   * `since` when subscribing again after a reconnection. */
  position: Position | null;
  /** The members of a presence channel, by session id. */
  readonly members: Map<string, Member>;
  on(event: "subscribed" | "unsubscribed", fn: () => void): this;
  on(event: "error", fn: (error: WebRocketError) => void): this;
  on(event: "joined" | "left", fn: (member: Member) => void): this;
  on(event: "recovery", fn: (recovery: Recovery) => void): this;
  on(event: string, fn: (data: any, delivery: Delivery) => void): this;
  /** The members of a presence channel. */
  presence(): Promise<Member[]>;
  /** The last messages of a channel with a history, or those after `since`. */
  history(since?: Position | null): Promise<HistoryAnswer>;
  /** Resolves with the channel name (`broadcasted`). */
  broadcast(event: string, data?: unknown): Promise<string>;
  /** Resolves with the channel name (`unsubscribed`). */
  unsubscribe(): Promise<string>;
}

/** A connection speaking the webrocket protocol to one vhost. */
export declare class WebRocket extends Emitter {
  constructor(url: string, options?: ConnectionOptions);
  readonly url: string;
  /** The session id the server greeted this connection with. */
  readonly sid: string | null;
  /** The authenticated user, if any. */
  readonly user: string | null;
  readonly channels: Map<string, Channel>;
  readonly isOpen: boolean;
  /** The current WebSocket. */
  readonly ws: WebSocket | null;
  on(event: "connected" | "reconnected", fn: (info: { sid: string }) => void): this;
  on(event: "disconnected" | "close", fn: (info: CloseInfo) => void): this;
  on(event: "reconnecting", fn: (info: { attempt: number; delay: number }) => void): this;
  on(event: "direct", fn: (message: { event: string; data: any }) => void): this;
  on(event: "error", fn: (error: WebRocketError | Error) => void): this;
  on(event: string, fn: Listener): this;
  /** Resolves with the session id. */
  connect(): Promise<string>;
  /** Resolves with the user name; remembered for reconnections. */
  authenticate(user: string, secret?: string): Promise<string>;
  subscribe(channel: string): Channel;
  /** Resolves with the event name (`triggered`). */
  trigger(event: string, data?: unknown): Promise<string>;
  logout(): Promise<true>;
  disconnect(): void;
}

/** A MonoRail message: `handler` routes it. */
export interface HandlerMessage {
  handler: string;
  [key: string]: any;
}

/** A connection speaking MonoRail's handler-routed JSON. */
export declare class MonoRail {
  constructor(url: string, options?: ConnectionOptions);
  /** open, close, error, message, ready, init, disconnected, reconnected,
   * reconnecting, gaveup, and one event per received handler. */
  readonly events: Emitter;
  /** The current WebSocket instance. */
  readonly wsConn: WebSocket | null;
  /** The session id from the last `session` message. */
  readonly id: string | null;
  connect(): this;
  disconnect(): this;
  ready(callback: (connection: MonoRail) => void): this;
  init(callback?: (id: string) => void): this;
  all(): this;
  query(params: unknown): this;
  get(params: unknown): this;
  watch(params: unknown): this;
  stop(params: unknown): this;
}

export default WebRocket;
