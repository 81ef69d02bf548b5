import { createHmac } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Clock } from "../../src/clock.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/main.js";
import { freezeReaction, postRevolutEvent, TREASURY } from "../fixtures/treasury.js";
import { FakeClock } from "../helpers/clock.js";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const REACTION = freezeReaction(["7995"]);

const STRIPE_SECRET = "whsec_replays";
const REVOLUT_SECRET = "revolut-replays";

/** A stand-in Revolut that records each call and can hold its answers until released. */
function standInRevolut() {
  const seen: { path: string; headers: IncomingHttpHeaders }[] = [];
  let hold: Promise<void> | undefined;
  let release: () => void = () => {};
  const arrived: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ path: req.url ?? "", headers: req.headers });
    for (const a of arrived.splice(0)) a();
    req.resume();
    req.on("end", async () => {
      if (hold) await hold;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ state: "FROZEN" }));
    });
  });
  return {
    seen,
    server,
    /** The next answers wait until `release()`. */
    holdAnswers() {
      hold = new Promise((r) => {
        release = () => {
          hold = undefined;
          r();
        };
      });
    },
    release: () => release(),
    /** Resolves when the next request arrives. */
    nextRequest: () => new Promise<void>((r) => arrived.push(r)),
    async listen() {
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function providersDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "butler-providers-"));
  const revolut = await readFile(new URL("../../providers/revolut.yaml", import.meta.url), "utf8");
  await writeFile(join(dir, "revolut.yaml"), revolut.replace(/webhooks:\n( {2}.*\n)+/, REACTION));
  await writeFile(
    join(dir, "stripe.yaml"),
    await readFile(new URL("../../providers/stripe.yaml", import.meta.url), "utf8"),
  );
  return dir;
}

function env(dir: string, revolutUrl: string): Record<string, string> {
  return {
    PROVIDERS_DIR: dir,
    BUTLER_PROVIDER_URLS: `revolut=${revolutUrl},stripe=http://127.0.0.1:9`,
    REVOLUT_ACCESS_TOKEN: "revolut-access",
    REVOLUT_WEBHOOK_SECRET: REVOLUT_SECRET,
    STRIPE_WEBHOOK_SECRET: STRIPE_SECRET,
  };
}

/** A Stripe delivery of `event`, signed now (each retry of Stripe's is signed anew). */
async function stripeDelivery(url: string, event: unknown, clock: Clock) {
  const body = JSON.stringify(event);
  const t = Math.floor(clock.now().getTime() / 1000);
  const v1 = createHmac("sha256", STRIPE_SECRET).update(`${t}.${body}`).digest("hex");
  const res = await fetch(`${url}/v1/webhooks/stripe`, {
    method: "POST",
    headers: { "content-type": "application/json", "stripe-signature": `t=${t},v1=${v1}` },
    body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** A Revolut delivery of `event`, signed now. */
async function revolutDelivery(url: string, event: unknown, clock: Clock) {
  const r = await postRevolutEvent(url, JSON.stringify(event), REVOLUT_SECRET, clock.now().getTime());
  return r as { status: number; body: Record<string, any> };
}

const blocked = (txn: string) => ({
  event: "TransactionCreated",
  timestamp: "2026-05-01T17:42:11Z",
  data: { id: txn, card_id: `card_${txn}`, merchant: { category_code: "7995", name: "Casino" } },
});

async function auditLines(s: { cli: TestServer["cli"] }): Promise<Record<string, any>[]> {
  const out = (await s.cli(["audit", "export"])).stdout.trim();
  return out ? out.split("\n").map((l) => JSON.parse(l)) : [];
}

/** Webhook replays, as an attacker (or an eager provider) would send them. */
describe(`a provider event is processed once (${ENGINE})`, () => {
  const revolut = standInRevolut();
  const clock: Clock = { now: () => new Date() };
  let dir: string;
  let s: TestServer;

  beforeAll(async () => {
    const revolutUrl = await revolut.listen();
    dir = await providersDir();
    s = await startTestServer({ policies: { "treasury.yaml": TREASURY }, env: env(dir, revolutUrl) });
  });
  afterAll(async () => {
    await s?.cleanup();
    await revolut.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("one Stripe event id delivered three times within the tolerance is recorded once; the replays are 200 and audited as duplicates", async () => {
    const event = { id: "evt_replayed_1", type: "charge.refunded", data: { object: { id: "ch_1" } } };
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await stripeDelivery(s.url, event, clock));
    expect(answers.map((a) => [a.status, a.body.duplicate])).toEqual([
      [200, false],
      [200, true],
      [200, true],
    ]);
    expect(answers[0]!.body).toMatchObject({ received: true, event_id: "evt_replayed_1" });
    const lines = (await auditLines(s)).filter((l) => l.provider_event_id === "evt_replayed_1");
    expect(lines.map((l) => l.type)).toEqual(["webhook.received", "webhook.duplicate", "webhook.duplicate"]);
    expect(lines[1]).toMatchObject({
      provider: "stripe",
      provider_event_type: "charge.refunded",
      first_event_id: lines[0]!.event_id,
      resumed_reactions: false,
    });
    // Another event is another event.
    const other = await stripeDelivery(s.url, { ...event, id: "evt_replayed_2" }, clock);
    expect(other.body.duplicate).toBe(false);
  });

  test("a replayed event's reaction runs once: the card is frozen once, however often the event comes", async () => {
    const before = revolut.seen.length;
    const first = await revolutDelivery(s.url, blocked("txn_r1"), clock);
    expect(first.body).toMatchObject({
      duplicate: false,
      reactions: [{ name: "freeze_on_blocked_merchant", status: 200 }],
    });
    for (let i = 0; i < 3; i++) {
      const again = await revolutDelivery(s.url, blocked("txn_r1"), clock);
      expect(again).toEqual({
        status: 200,
        body: {
          received: true,
          duplicate: true,
          event_id: "txn_r1",
          event_type: "TransactionCreated",
          reactions: [],
        },
      });
    }
    expect(revolut.seen.slice(before).map((r) => r.path)).toEqual(["/cards/card_txn_r1/freeze"]);
    // The reaction's call carries an idempotency key derived from the event, not from the decision.
    expect(revolut.seen.at(-1)!.headers["idempotency-key"]).toMatch(
      /^butler-[0-9a-f]{16}-webhook-[0-9a-f]{32}-freeze_on_blocked_merchant$/,
    );
    const gateway = (await auditLines(s)).filter(
      (l) => l.type === "gateway.allowed" && l.resource === "revolut.com/cards/card_txn_r1",
    );
    expect(gateway).toHaveLength(1);
  });

  test("an event without an id of its own is deduplicated by its body: the same body once, another body again", async () => {
    const before = revolut.seen.length;
    const a = blocked("txn_r2");
    // The same transaction's next event shares data.id but is another event (another body).
    const b = { ...a, timestamp: "2026-05-01T17:43:00Z" };
    expect((await revolutDelivery(s.url, a, clock)).body.duplicate).toBe(false);
    expect((await revolutDelivery(s.url, a, clock)).body.duplicate).toBe(true);
    expect((await revolutDelivery(s.url, b, clock)).body.duplicate).toBe(false);
    expect(revolut.seen.length - before).toBe(2);
  });

  test("concurrent deliveries of one event: exactly one runs the reaction", async () => {
    const before = revolut.seen.length;
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => revolutDelivery(s.url, blocked("txn_r3"), clock)),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(answers.filter((a) => a.body.duplicate === false)).toHaveLength(1);
    expect(revolut.seen.length - before).toBe(1);
    const lines = (await auditLines(s)).filter((l) => l.provider_event_id === "txn_r3");
    expect(lines.filter((l) => l.type === "webhook.received")).toHaveLength(1);
    expect(lines.filter((l) => l.type === "webhook.duplicate")).toHaveLength(7);
    expect((await s.cli(["audit", "verify"])).code).toBe(0);
  });

  test("a badly signed replay is still refused (400, webhook.rejected), never counted as a duplicate", async () => {
    const body = JSON.stringify(blocked("txn_r1"));
    const res = await fetch(`${s.url}/v1/webhooks/revolut`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "revolut-request-timestamp": String(Date.now()),
        "revolut-signature": `v1=${"0".repeat(64)}`,
      },
      body,
    });
    expect(res.status).toBe(400);
  });
});

describe.skipIf(ENGINE !== "postgres")("two instances on one database (postgres)", () => {
  const revolut = standInRevolut();
  const clock: Clock = { now: () => new Date() };
  let dir: string;
  let s: TestServer;
  let second: RunningServer;

  beforeAll(async () => {
    const revolutUrl = await revolut.listen();
    dir = await providersDir();
    s = await startTestServer({ policies: { "treasury.yaml": TREASURY }, env: env(dir, revolutUrl) });
    second = await startServer(loadConfig(s.env), createLogger("silent"), clock);
  });
  afterAll(async () => {
    await second?.close();
    await s?.cleanup();
    await revolut.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("the same event at both instances at once: exactly one runs the reaction", async () => {
    for (const txn of ["txn_i1", "txn_i2", "txn_i3"]) {
      const before = revolut.seen.length;
      const answers = await Promise.all(
        [s.url, second.url, s.url, second.url].map((u) => revolutDelivery(u, blocked(txn), clock)),
      );
      expect(answers.filter((a) => a.body.duplicate === false)).toHaveLength(1);
      expect(revolut.seen.length - before).toBe(1);
    }
    expect((await s.cli(["audit", "verify"])).code).toBe(0);
  });
});

describe(`reactions claimed by an instance that died are run by the next delivery (${ENGINE})`, () => {
  const revolut = standInRevolut();
  const clock = new FakeClock(Date.now());
  let dir: string;
  let s: TestServer;

  beforeAll(async () => {
    const revolutUrl = await revolut.listen();
    dir = await providersDir();
    s = await startTestServer({
      policies: { "treasury.yaml": TREASURY },
      env: env(dir, revolutUrl),
      clock,
    });
  });
  afterAll(async () => {
    revolut.release();
    await s?.cleanup();
    await revolut.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("a delivery while the first still runs is a duplicate; after the lease it takes over, with the same idempotency key", async () => {
    const { REACTION_LEASE_MS } = await import("../../src/providers/webhook-events.js");
    revolut.holdAnswers();
    const arrived = revolut.nextRequest();
    // The first delivery's reaction is under way (its answer held): as if its instance hung or died.
    const first = revolutDelivery(s.url, blocked("txn_l1"), clock);
    await arrived;
    const meanwhile = await revolutDelivery(s.url, blocked("txn_l1"), clock);
    expect(meanwhile.body).toMatchObject({ duplicate: true, reactions: [] });
    expect(revolut.seen).toHaveLength(1);
    // The lease runs out: the provider's next retry runs the unfinished reaction.
    clock.advance(REACTION_LEASE_MS + 1000);
    const arrivedAgain = revolut.nextRequest();
    const resumed = revolutDelivery(s.url, blocked("txn_l1"), clock);
    await arrivedAgain;
    revolut.release();
    expect((await resumed).body).toMatchObject({
      duplicate: true,
      reactions: [{ name: "freeze_on_blocked_merchant", status: 200 }],
    });
    await first;
    expect(revolut.seen).toHaveLength(2);
    // Both attempts carry one key: the provider executes the freeze once.
    expect(revolut.seen[1]!.headers["idempotency-key"]).toBe(revolut.seen[0]!.headers["idempotency-key"]);
    // Done now: later replays run nothing.
    clock.advance(REACTION_LEASE_MS + 1000);
    expect((await revolutDelivery(s.url, blocked("txn_l1"), clock)).body.reactions).toEqual([]);
    expect(revolut.seen).toHaveLength(2);
    const lines = (await auditLines(s)).filter((l) => l.provider_event_id === "txn_l1");
    expect(lines.map((l) => [l.type, l.resumed_reactions])).toEqual([
      ["webhook.received", undefined],
      ["webhook.duplicate", false],
      ["webhook.duplicate", true],
      ["webhook.duplicate", false],
    ]);
  });
});
