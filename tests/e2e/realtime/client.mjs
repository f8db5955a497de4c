// Drives zapgate's Socket.IO server with the stock socket.io-client v4 and prints one JSON line
// per observation; tests/e2e/test_socketio_client.py starts the server and asserts on the lines.
//
//   node client.mjs http://127.0.0.1:PORT
//
// Clients: "default" (polling, then the upgrade to websocket), "websocket" (transports: ["websocket"]),
// "polling" (transports: ["polling"], so binary goes base64 over HTTP). Each connects to /tenant-1
// with auth {token} and query {token}, acks, receives emits and binary, and joins a shared room;
// refused connects must produce connect_error; a server-side disconnect must reach the client.
import { io } from "socket.io-client";

const base = process.argv[2];
const NAMESPACE = "/tenant-1";
const ACK_TIMEOUT = 5000;

const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const hex = (data) => Buffer.from(data).toString("hex");

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

function connectOrFail(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
}

function open(name, options, namespace = NAMESPACE, token = "good") {
  return io(base + namespace, {
    forceNew: true, reconnection: false, auth: { token }, query: { token: `Bearer ${token}` }, ...options,
  });
}

async function exercise(name, socket) {
  const ack = (...args) => socket.timeout(ACK_TIMEOUT).emitWithAck(...args);
  const [welcome] = await socket.welcome;
  out({ client: name, step: "welcome", data: welcome, socketId: socket.id });
  out({ client: name, step: "whoami", data: await ack("whoami") });
  const echoed = await new Promise((resolve, reject) => socket.timeout(ACK_TIMEOUT).emit(
    "echo", "olá ✓", { n: 1 }, [1, 2], (err, ...args) => (err ? reject(err) : resolve(args))));
  out({ client: name, step: "echo", data: echoed });
  const binaryBack = once(socket, "binary-back");
  const reversed = await ack("binary", Buffer.from([1, 2, 3, 255]), "label");
  const [pushed] = await binaryBack;
  out({ client: name, step: "binary", ack: hex(reversed), pushed: { label: pushed.label, blob: hex(pushed.blob) } });
  out({ client: name, step: "join", data: await ack("join", "room-shared") });
}

async function main() {
  const clients = {
    default: open("default", {}),
    websocket: open("websocket", { transports: ["websocket"] }),
    polling: open("polling", { transports: ["polling"] }),
  };
  for (const [name, socket] of Object.entries(clients)) {
    socket.welcome = once(socket, "welcome");
    socket.io.once("open", () => out({ client: name, step: "engine-open", transport: socket.io.engine.transport.name }));
  }
  await Promise.all(Object.entries(clients).map(async ([name, socket]) => {
    await connectOrFail(socket);
    out({ client: name, step: "connect", transport: socket.io.engine.transport.name });
  }));
  const engine = clients.default.io.engine;
  if (engine.transport.name !== "websocket") await once(engine, "upgrade");
  out({ client: "default", step: "upgraded", transport: engine.transport.name });

  await Promise.all(Object.entries(clients).map(([name, socket]) => exercise(name, socket)));

  const heard = Object.entries(clients).map(async ([name, socket]) => {
    const [payload] = await once(socket, "room-event");
    out({ client: name, step: "room-event", data: payload });
  });
  const delivered = await clients.polling.timeout(ACK_TIMEOUT).emitWithAck("shout", "room-shared", { hello: "room" });
  out({ client: "polling", step: "shout", delivered });
  await Promise.all(heard);

  const kicked = once(clients.websocket, "disconnect");
  clients.websocket.emit("kick-me");
  const [reason] = await kicked;
  out({ client: "websocket", step: "kicked", reason });

  for (const [name, namespace, token, options] of [
    ["bad-token", NAMESPACE, "bad", {}],
    ["bad-token-ws", NAMESPACE, "bad", { transports: ["websocket"] }],
    ["unknown-namespace", "/nope", "good", {}],
  ]) {
    const socket = open(name, options, namespace, token);
    const [err] = await once(socket, "connect_error");
    out({ client: name, step: "connect_error", message: err.message, data: err.data ?? null });
    socket.close();
  }
  for (const socket of Object.values(clients)) socket.close();
  out({ step: "done" });
}

const watchdog = setTimeout(() => { out({ step: "timeout" }); process.exit(2); }, 30000);
main().then(() => { clearTimeout(watchdog); process.exit(0); },
            (err) => { out({ step: "error", message: String(err && err.stack || err) }); process.exit(1); });
