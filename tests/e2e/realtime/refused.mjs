// What the stock socket.io-client does when its handshake is refused for being over a limit
// (tests/e2e/test_realtime_limits.py): one JSON line per observation, until it connects or 20 s pass.
//
//   node refused.mjs http://127.0.0.1:PORT <transports: default|websocket>
//
// Reconnection stays on, as the frontends have it, with short delays so the test is quick.
import { io } from "socket.io-client";

const [base, transports] = process.argv.slice(2);
const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const options = { auth: { token: "good" }, reconnectionDelay: 200, reconnectionDelayMax: 500 };
if (transports === "websocket") options.transports = ["websocket"];

const socket = io(base + "/tenant-1", options);
socket.on("connect_error", (error) => {
  out({ step: "connect_error", message: error.message, description: error.description?.message ?? error.description ?? null,
        status: error.description?.target?.status ?? error.context?.status ?? null });
});
socket.io.on("reconnect_attempt", (attempt) => out({ step: "reconnect_attempt", attempt }));
socket.on("connect", () => {
  out({ step: "connect", transport: socket.io.engine.transport.name });
  socket.close();
  process.exit(0);
});
setTimeout(() => { out({ step: "gave up" }); process.exit(1); }, 20000);
