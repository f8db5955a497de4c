// bench.fanout's client side: N stock socket.io-client v4 sockets (websocket transport, each its own
// connection) in this one Node process. Prints JSON lines: {"step":"connected"} once all are connected,
// then {"step":"done", ...} when every socket has received `expect` events (or after the deadline).
// Usage: node fanout_client.cjs <url> <namespace> <token> <sockets> <events per socket> <deadline seconds>
const { io } = require("socket.io-client");

const [url, namespace, token, socketsArg, expectArg, deadlineArg] = process.argv.slice(2);
const sockets = Number(socketsArg), expect = Number(expectArg);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const latencies = [];
let connected = 0, received = 0, failed = 0, firstAt = 0, lastAt = 0;

function done(reason) {
  latencies.sort((a, b) => a - b);
  const pick = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil(p / 100 * latencies.length) - 1)] : null;
  print({ step: "done", reason, received, expected: sockets * expect, failed, p50_ms: pick(50), p99_ms: pick(99),
          max_ms: latencies.length ? latencies[latencies.length - 1] : null, first_at: firstAt, last_at: lastAt });
  process.exit(0);
}

for (let i = 0; i < sockets; i++) {
  const socket = io(url + namespace, { transports: ["websocket"], query: { token }, forceNew: true,
                                       reconnection: false, timeout: 60000 });
  socket.on("connect", () => { if (++connected === sockets) print({ step: "connected" }); });
  socket.on("connect_error", (error) => { failed++; print({ step: "error", message: error.message }); });
  socket.on("company-1-contact", (payload) => {
    // Date.now() truncates to whole milliseconds while the server stamps a fractional one, so a
    // sub-millisecond delivery could read negative: take the microsecond wall clock instead.
    const now = performance.timeOrigin + performance.now();
    if (!firstAt) firstAt = now;
    lastAt = now;
    latencies.push(now - payload.t);
    if (++received === sockets * expect) done("all received");
  });
}
setTimeout(() => done("deadline"), Number(deadlineArg) * 1000);
