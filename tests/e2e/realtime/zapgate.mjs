// Connects the stock socket.io-client to a zapgate company namespace and reports, one JSON line each,
// what happens: {"step":"connect"|"connect_error"|"ready"|"event"|"disconnect", ...}.
// Usage: node zapgate.mjs <url> <namespace> <token> <transports: default|websocket|polling> <how: query|auth|bearer>
//        [<comma-separated statuses to join>] [<ticketId to joinChatBox>] [heartbeat: "1" sends userStatus]
// It runs until its standard input closes (or 30 s pass).
import { io } from "socket.io-client";

const [url, namespace, token, transports, how, statuses = "", chat = "", heartbeat = ""] = process.argv.slice(2);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const options = { reconnection: false, timeout: 10000 };
if (transports === "websocket" || transports === "polling") options.transports = [transports];
if (how === "auth") options.auth = { token };
else options.query = { userId: "1", token: how === "bearer" ? `Bearer ${token}` : token };

const socket = io(url + namespace, options);
socket.on("connect", async () => {
  print({ step: "connect", transport: socket.io.engine.transport.name });
  const acks = [];
  for (const status of statuses.split(",").filter(Boolean)) {
    acks.push(socket.timeout(5000).emitWithAck("joinTickets", status));
  }
  acks.push(socket.timeout(5000).emitWithAck("joinNotification"));
  if (chat) acks.push(socket.timeout(5000).emitWithAck("joinChatBox", Number(chat)));
  await Promise.all(acks);
  print({ step: "ready", transport: socket.io.engine.transport.name });
  if (heartbeat === "1") {
    socket.emit("userStatus");
    setInterval(() => socket.emit("userStatus"), 500);
  }
});
socket.on("connect_error", (error) => { print({ step: "connect_error", message: error.message }); process.exit(0); });
socket.on("disconnect", (reason) => { print({ step: "disconnect", reason }); });
socket.onAny((name, payload) => print({ step: "event", name, payload }));
socket.io.engine?.on?.("upgrade", (transport) => print({ step: "upgrade", transport: transport.name }));

process.stdin.on("end", () => { socket.close(); process.exit(0); });
process.stdin.resume();
setTimeout(() => { socket.close(); process.exit(0); }, 30000);
