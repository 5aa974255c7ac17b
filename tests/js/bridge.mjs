// A line bridge between a test and the Node `ws` client (the client seed
// 002 recommends): connects to the URL given, prints {"event":"open"},
// then every message received as one JSON line on stdout, and sends every
// line read from stdin as one text message. Ends when stdin ends.
import { createInterface } from "node:readline";
import WebSocket from "ws";

const url = process.argv[2];
const ws = new WebSocket(url);
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");

ws.on("open", () => {
  print({ event: "open" });
  const input = createInterface({ input: process.stdin });
  input.on("line", (line) => ws.send(line));
  input.on("close", () => ws.close(1000));
});
ws.on("message", (data) => {
  try {
    print(JSON.parse(data.toString()));
  } catch {
    print({ event: "unparsable", data: data.toString() });
  }
});
ws.on("close", (code) => {
  print({ event: "close", code });
  process.exit(0);
});
ws.on("error", (error) => {
  print({ event: "error", message: String(error.message) });
  process.exit(1);
});
