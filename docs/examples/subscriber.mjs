// Follow the engine's events from Node.js, written only from the NATS spec.
//   npm install nats@2
//   NATS_URL=nats://127.0.0.1:4222 TITAN_HMAC_SECRET=... node subscriber.mjs
// Prints every order report since the start of the stream, checks that `seq`
// has no gap per source, and asks the engine for its status (a signed command).
import { connect, consumerOpts, headers } from "nats";
import { createHmac } from "node:crypto";

const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
const secret = process.env.TITAN_OPERATOR_SECRET ?? process.env.TITAN_HMAC_SECRET;

// A signed operator command: HMAC-SHA256 of the exact body bytes, hex, in a header.
const body = new TextEncoder().encode(JSON.stringify({ ts: Date.now() }));
const h = headers();
h.set("Titan-Signature", createHmac("sha256", secret).update(body).digest("hex"));
const status = JSON.parse(new TextDecoder().decode((await nc.request("titan.cmd.operator.status.v1", body, { headers: h, timeout: 5000 })).data));
console.log(JSON.stringify({ trading_state: status.trading_state, actors: status.actors.length }));

// Every event of the stream, in order; `seq` per source shows a missed one.
const js = nc.jetstream();
const opts = consumerOpts();
opts.orderedConsumer();
opts.deliverAll();
const sub = await js.subscribe("titan.evt.execution.report.v1.>", opts);
const lastSeq = new Map();
const idleMs = Number(process.env.IDLE_MS ?? 0);
let timer = idleMs ? setTimeout(() => sub.unsubscribe(), idleMs) : null;
for await (const m of sub) {
  const event = JSON.parse(new TextDecoder().decode(m.data));
  const previous = lastSeq.get(event.source) ?? 0;
  if (event.seq !== previous + 1) console.error(`gap in ${event.source}: ${previous} -> ${event.seq}`);
  lastSeq.set(event.source, event.seq);
  console.log(JSON.stringify({ subject: m.subject, type: event.type, source: event.source, seq: event.seq,
                               status: event.data.status, signal_id: event.data.signal_id }));
  if (timer) { clearTimeout(timer); timer = setTimeout(() => sub.unsubscribe(), idleMs); }
}
await nc.close();
