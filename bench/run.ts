/**
 * `npm run bench`: Butler's performance figures, each next to a baseline measured in the same run.
 *
 * 1. In-process decisions on a generated policy of 1,000 projects x 20 grants (globs, TTLs,
 *    constraints, deny patterns), calls mixed ALLOW and DENY (the mix is printed): decisions/s and
 *    per-decision p50/p99 of `evaluate` (with its per-revision memo) on repeated calls (warm), and
 *    of each distinct call's first decision with the memo empty (cold); baseline: the same calls
 *    through `evaluateUnmemoized` (and, cold, through the engine before the memo,
 *    test/policy/reference-evaluate.ts).
 * 2. POST /v1/authorize with durable audit on PostgreSQL, 50 connections, and at 1 connection (one
 *    request at a time, each timed to 0.01 ms); baseline: a bare fastify JSON endpoint in the same
 *    server process. Then the same with AUDIT_DURABILITY=async, in a second server process, against
 *    its own bare endpoint. The server process is pinned to core 0 and this process (the load) to
 *    core 1 with taskset, when the machine has two cores and /usr/bin/taskset (PostgreSQL is not
 *    pinned).
 * 3. Audit append rate on PostgreSQL with group commit; baseline: one transaction per event.
 * 4. Approval commit to the first ALLOW on a second instance; baseline: a plain ALLOW there.
 * 6. (with 2, or alone) The gateway in the call path: GET through /v1/proxy/stripe vs straight to
 *    a stand-in Stripe, latency at 1 connection and throughput at 50.
 * 5. Approval commit to the agent's A2A update (an open SubscribeToTask stream, and a push
 *    notification); baseline: a GetTask round trip over A2A to the same server.
 * 8. The steps before the policy decides, in process: a call checked against its agent's pact, and
 *    the parameters scanned for personal data and secrets; baseline: the same call in a project
 *    without them (bench/pre-checks.ts). Then the steps after: drift's count of the call and the
 *    trust step of a call a trust rule could limit, with the database reads they made.
 * 9. A policy change simulated over 30 days of history with 1,000,000 audit lines (`butler policy
 *    simulate`, end to end); baseline: counting those lines (bench/simulate.ts).
 * 7. (BENCH_ONLY=scale) Scale-out: 1, 2 and 4 server processes on one database, each pinned to a
 *    core, authorize throughput and p99, and approval to ALLOW on another instance; baseline: the
 *    1-instance figures of the same run (bench/scale.ts).
 *
 * PostgreSQL: BENCH_DATABASE_URL or DATABASE_URL (a server where the bench may create a database),
 * default postgres://postgres@127.0.0.1:5432/postgres. Durations: BENCH_SECONDS (default 10).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { Agent, createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import os, { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type Task, TaskState } from "@a2a-js/sdk";
import autocannon from "autocannon";
import pg from "pg";
import { createAuditLog } from "../src/audit/audit-log.js";
import { verifyAuditChain } from "../src/audit/verify.js";
import { systemClock } from "../src/clock.js";
import { loadConfig } from "../src/config.js";
import { postgresDatabase } from "../src/db/client.js";
import { migrate } from "../src/db/migrate.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/main.js";
import {
  type Call,
  compilePolicies,
  type Decision,
  evaluate,
  evaluateUnmemoized,
  type PolicyIndex,
} from "../src/policy/index.js";
import { createServices } from "../src/services.js";
import { a2aClient, ask, withPush } from "../test/helpers/a2a.js";
import { createPostgresDatabase } from "../test/helpers/pg-database.js";
import { referenceEvaluate } from "../test/policy/reference-evaluate.js";
import { PINNING, percentile, pinLoadGenerator, startBenchServer, startStandIn } from "./child.js";
import { distinctCalls, makeCalls, parseDocs } from "./policy-gen.js";
import { benchPreChecks } from "./pre-checks.js";
import { benchScale } from "./scale.js";
import { benchSimulation } from "./simulate.js";
import { runSoak } from "./soak.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ADMIN_URL =
  process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const NOW = Date.parse("2026-06-01T00:00:00Z");

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

// ---------------------------------------------------------------------------------------------
// 1. In-process decisions
// ---------------------------------------------------------------------------------------------

type Decide = (index: PolicyIndex, call: Call, nowMs: number) => Decision;

/**
 * Decisions/s and per-decision p50/p99 over `calls`, repeated, of the unmemoized evaluate and of
 * evaluate (the first 200,000 decisions of each warm up and are not timed). The two alternate in
 * rounds of about 20 ms, so that both see the same machine.
 */
function measureWarm(index: PolicyIndex, calls: Call[], seconds: number) {
  const ways: [string, Decide][] = [
    ["plain", evaluateUnmemoized],
    ["memo", evaluate],
  ];
  for (const [, decide] of ways)
    for (let i = 0; i < 200_000; i++) decide(index, calls[i % calls.length]!, NOW);
  const total = { plain: { n: 0, ns: 0 }, memo: { n: 0, ns: 0 } } as Record<
    string,
    { n: number; ns: number }
  >;
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  let allow = 0;
  while (process.hrtime.bigint() < deadline) {
    for (const [name, decide] of ways) {
      const t0 = process.hrtime.bigint();
      const roundEnd = t0 + 20_000_000n;
      let n = 0;
      while (process.hrtime.bigint() < roundEnd) {
        for (let i = 0; i < calls.length; i++)
          if (decide(index, calls[i]!, NOW).decision === "ALLOW") allow++;
        n += calls.length;
      }
      total[name]!.ns += Number(process.hrtime.bigint() - t0);
      total[name]!.n += n;
    }
  }
  if (allow < 0) console.log(allow);
  // Per-decision latency on a sample (includes ~20-40 ns of timer overhead), alternating too.
  const samples = { plain: new Float64Array(300_000), memo: new Float64Array(300_000) } as Record<
    string,
    Float64Array
  >;
  for (let i = 0; i < 300_000; i++) {
    const c = calls[i % calls.length]!;
    for (const [name, decide] of ways) {
      const t0 = process.hrtime.bigint();
      decide(index, c, NOW);
      samples[name]![i] = Number(process.hrtime.bigint() - t0);
    }
  }
  const result = (name: string) => {
    const sample = samples[name]!.sort();
    return {
      perSecond: total[name]!.n / (total[name]!.ns / 1e9),
      p50: sample[Math.floor(sample.length * 0.5)]!,
      p99: sample[Math.floor(sample.length * 0.99)]!,
    };
  };
  return { plain: result("plain"), memo: result("memo") };
}

/**
 * The cold path: each distinct call decided once, with the memo empty (on fresh copies of the
 * compiled projects: a memo belongs to one CompiledProject object), for about `seconds`; passes
 * alternate between the two ways of deciding so that both see the same machine. Decisions/s of
 * each.
 */
function measureCold(index: PolicyIndex, calls: Call[], seconds: number) {
  const ways: [string, Decide][] = [
    ["plain", evaluateUnmemoized],
    ["before", referenceEvaluate],
    ["memo", evaluate],
  ];
  const total: Record<string, { n: number; ns: number }> = {};
  for (const [name] of ways) total[name] = { n: 0, ns: 0 };
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  do {
    for (const [name, decide] of ways) {
      const fresh: PolicyIndex = { projects: new Map([...index.projects].map(([k, p]) => [k, { ...p }])) };
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < calls.length; i++) decide(fresh, calls[i]!, NOW);
      total[name]!.ns += Number(process.hrtime.bigint() - t0);
      total[name]!.n += calls.length;
    }
  } while (process.hrtime.bigint() < deadline);
  const perSecond = (name: string) => total[name]!.n / (total[name]!.ns / 1e9);
  return { memo: perSecond("memo"), plain: perSecond("plain"), before: perSecond("before") };
}

/** "41% ALLOW, 59% DENY (no_action_grant 20%, ...)": what the calls get, decided once each. */
function mix(index: PolicyIndex, calls: Call[]): string {
  const counts = new Map<string, number>();
  let allow = 0;
  for (const c of calls) {
    const d = evaluateUnmemoized(index, c, NOW);
    if (d.decision === "ALLOW") allow++;
    else counts.set(d.code, (counts.get(d.code) ?? 0) + 1);
  }
  const pct = (k: number) => `${fmt((k / calls.length) * 100)}%`;
  const codes = [...counts].sort((a, b) => b[1] - a[1]).map(([code, k]) => `${code} ${pct(k)}`);
  return `${pct(allow)} ALLOW, ${pct(calls.length - allow)} DENY (${codes.join(", ")})`;
}

/** How fast this machine runs plain JavaScript, to read the other figures against. */
function machineReference(): number {
  let x = 0;
  const n = 300_000_000;
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) x += i & 7;
  const ns = Number(process.hrtime.bigint() - t) / n;
  if (x < 0) console.log(x);
  return ns;
}

function benchDecisions() {
  console.log(
    `\nMachine: ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? "?"}; a trivial loop iteration takes ${fmt(machineReference(), 2)} ns`,
  );
  console.log("\n1. In-process decisions (pure policy engine)");
  const t = process.hrtime.bigint();
  const big = compilePolicies(parseDocs(1000));
  const parseMs = Number(process.hrtime.bigint() - t) / 1e6;
  // The warm sets are repeated; the cold set is every distinct call once.
  const hotCalls = makeCalls(1000, 200);
  const wideCalls = makeCalls(1000, 10_000);
  const coldCalls = distinctCalls(makeCalls(1000, 100_000));
  const per = Math.max(1, SECONDS / 6);
  const { plain: plainHot, memo: hot } = measureWarm(big, hotCalls, per * 2);
  const { plain: plainWide, memo: wide } = measureWarm(big, wideCalls, per * 2);
  const cold = measureCold(big, coldCalls, per * 3);
  const row = (name: string, r: { perSecond: number; p50?: number; p99?: number }, extra = "") =>
    console.log(
      `   ${name.padEnd(58)} ${fmt(r.perSecond).padStart(10)} decisions/s${r.p50 === undefined ? "" : `   p50 ${fmt(r.p50)} ns   p99 ${fmt(r.p99!)} ns`}${extra}`,
    );
  const ratio = (a: number, b: number, target: string) => `   = ${fmt(a / b, 2)}x the baseline (${target})`;
  console.log(
    `   policy: 1,000 projects x 20 grants each (globs, TTLs, constraints, deny patterns; 5 agents, 2 roles), parsed and compiled in ${fmt(parseMs)} ms`,
  );
  console.log(`   200 distinct calls over 1,000 projects:       ${mix(big, hotCalls)}`);
  console.log(
    `   ${fmt(distinctCalls(wideCalls).length)} distinct calls over 1,000 projects:    ${mix(big, wideCalls)}`,
  );
  console.log(`   ${fmt(coldCalls.length)} distinct calls over 1,000 projects:   ${mix(big, coldCalls)}`);
  row("baseline: evaluate without memo, 200 distinct calls, repeated", plainHot);
  row("evaluate (memo), 200 distinct calls, repeated (warm)", hot);
  console.log(ratio(hot.perSecond, plainHot.perSecond, "target: >= 5,000,000 decisions/s"));
  row("baseline: evaluate without memo, 10,000 calls, repeated", plainWide);
  row("evaluate (memo), 10,000 calls, repeated (warm)", wide);
  console.log(ratio(wide.perSecond, plainWide.perSecond, "target: >= 5,000,000 decisions/s"));
  row(`baseline: evaluate without memo, ${fmt(coldCalls.length)} distinct calls once`, {
    perSecond: cold.plain,
  });
  row("the engine before the memo (test/policy/reference-evaluate.ts), same calls once", {
    perSecond: cold.before,
  });
  row(`evaluate (memo), each call's first decision (cold)`, { perSecond: cold.memo });
  console.log(ratio(cold.memo, cold.plain, "target: >= 1.00x, no slower cold path"));
  console.log(`   = ${fmt(cold.memo / cold.before, 2)}x the engine before the memo (target: >= 1.00x)`);
  return { hot, plainHot, cold };
}

// ---------------------------------------------------------------------------------------------
// 2. HTTP authorize vs bare fastify
// ---------------------------------------------------------------------------------------------

function cannon(
  url: string,
  token: string | undefined,
  body: string | undefined,
  seconds: number,
  connections = 50,
): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url,
        method: body === undefined ? "GET" : "POST",
        connections,
        duration: seconds,
        headers: {
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        ...(body === undefined ? {} : { body }),
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
}

/** Latencies of one connection, to the hundredth of a millisecond (autocannon's are whole ms). */
interface Sequential {
  perSecond: number;
  p50: number;
  p99: number;
  mean: number;
}

/**
 * One keep-alive connection, one request at a time, for `seconds`: each request timed on its own
 * with hrtime, so that sub-millisecond answers are not rounded away.
 */
async function sequential(
  url: string,
  token: string | undefined,
  body: string | undefined,
  seconds: number,
): Promise<Sequential> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(url);
  const headers: Record<string, string> = {
    ...(body === undefined ? {} : { "content-type": "application/json" }),
    ...(token ? { authorization: `Bearer ${token}` } : {}),
  };
  const once = () =>
    new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        {
          host: u.hostname,
          port: u.port,
          path: `${u.pathname}${u.search}`,
          method: body === undefined ? "GET" : "POST",
          headers,
          agent,
        },
        (res) => {
          res.resume();
          res.once("end", () =>
            res.statusCode && res.statusCode < 300
              ? resolve()
              : reject(new Error(`HTTP ${res.statusCode} from ${url}`)),
          );
        },
      );
      req.once("error", reject);
      req.end(body);
    });
  const ms: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t = process.hrtime.bigint();
    await once();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  agent.destroy();
  ms.sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  return { perSecond: ms.length / seconds, p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), mean };
}

/** What section 2 measured with AUDIT_DURABILITY=async (for the summary). */
let asyncAudit: Awaited<ReturnType<typeof benchAsyncAudit>> | undefined;

/**
 * The asynchronous mode (AUDIT_DURABILITY=async: answers wait for PostgreSQL's commit, not for its
 * disk flush) in a second server process, against the bare endpoint of that process.
 */
async function benchAsyncAudit(dbUrl: string, body: string) {
  const server = await startBenchServer(dbUrl, { durability: "async", pin: true });
  const { url, bareUrl, token } = server.info;
  try {
    await cannon(`${bareUrl}/bare`, undefined, body, 2);
    await cannon(`${url}/v1/authorize`, token, body, 2);
    const bare = await cannon(`${bareUrl}/bare`, undefined, body, SECONDS);
    const auth = await cannon(`${url}/v1/authorize`, token, body, SECONDS);
    await sequential(`${url}/v1/authorize`, token, body, 1);
    const bare1 = await sequential(`${bareUrl}/bare`, undefined, body, Math.max(2, SECONDS / 2));
    const auth1 = await sequential(`${url}/v1/authorize`, token, body, Math.max(2, SECONDS / 2));
    console.log(
      "   AUDIT_DURABILITY=async (answers wait for the commit, not the disk flush), a second server:",
    );
    console.log(
      `   ${"baseline: bare fastify JSON".padEnd(34)} ${fmt(bare.requests.average)} req/s   p50 ${fmt(bare.latency.p50, 2)} ms   p99 ${fmt(bare.latency.p99, 2)} ms`,
    );
    console.log(
      `   ${"authorize + async audit".padEnd(34)} ${fmt(auth.requests.average)} req/s   p50 ${fmt(auth.latency.p50, 2)} ms   p99 ${fmt(auth.latency.p99, 2)} ms   errors ${auth.errors + auth.non2xx}`,
    );
    console.log(
      `   ratio async authorize / bare:      ${fmt(auth.requests.average / bare.requests.average, 2)}x   (target >= 0.8x)`,
    );
    console.log(
      `   at 1 connection, async authorize p50 ${fmt(auth1.p50, 2)} ms, p99 ${fmt(auth1.p99, 2)} ms (bare p50 ${fmt(bare1.p50, 2)} ms, ${fmt(auth1.p50 / bare1.p50, 1)}x)`,
    );
    return { bare, auth, auth1, bare1 };
  } finally {
    await server.stop();
  }
}

async function benchHttp(dbUrl: string) {
  console.log(
    "\n2. POST /v1/authorize with durable audit on PostgreSQL, 50 connections (autocannon in this process, server in a child)",
  );
  console.log(
    PINNING
      ? `   pinned with taskset: the server process on core ${PINNING.server}, this process (the load) on core ${PINNING.load}; PostgreSQL is not pinned`
      : "   not pinned (one core, or no /usr/bin/taskset): server and load share the cores",
  );
  const server = await startBenchServer(dbUrl, { pin: true });
  const { url, bareUrl, token, adminToken } = server.info;
  try {
    const body = JSON.stringify({
      action: "aws:s3:GetObject",
      resource: "arn:aws:s3:::ledger-internal/2026/05.csv",
    });
    await cannon(`${bareUrl}/bare`, undefined, body, 2);
    await cannon(`${url}/v1/authorize`, token, body, 2);
    const bare = await cannon(`${bareUrl}/bare`, undefined, body, SECONDS);
    const auth = await cannon(`${url}/v1/authorize`, token, body, SECONDS);
    const row = (name: string, r: autocannon.Result) =>
      console.log(
        `   ${name.padEnd(34)} ${fmt(r.requests.average)} req/s   p50 ${fmt(r.latency.p50, 2)} ms   p99 ${fmt(r.latency.p99, 2)} ms   errors ${r.errors + r.non2xx}`,
      );
    row("baseline: bare fastify JSON", bare);
    row("POST /v1/authorize + audit", auth);
    console.log(
      `   ratio authorize / bare:            ${fmt(auth.requests.average / bare.requests.average, 2)}x   (target >= 0.5x, p99 < 10 ms)`,
    );
    // One connection: the latency of one durable decision (its commit included), to 0.01 ms.
    await sequential(`${bareUrl}/bare`, undefined, body, 1);
    await sequential(`${url}/v1/authorize`, token, body, 1);
    const bare1 = await sequential(`${bareUrl}/bare`, undefined, body, Math.max(2, SECONDS / 2));
    const auth1 = await sequential(`${url}/v1/authorize`, token, body, Math.max(2, SECONDS / 2));
    const row1 = (name: string, r: Sequential) =>
      console.log(
        `   ${name.padEnd(34)} ${fmt(r.perSecond)} req/s   p50 ${fmt(r.p50, 2)} ms   p99 ${fmt(r.p99, 2)} ms`,
      );
    row1("baseline: bare, 1 connection", bare1);
    row1("authorize + audit, 1 connection", auth1);
    console.log(
      `   at 1 connection, authorize p50 ${fmt(auth1.p50, 2)} ms = bare + ${fmt(auth1.p50 - bare1.p50, 2)} ms (${fmt(auth1.p50 / bare1.p50, 1)}x; target p50 < 1 ms)`,
    );
    asyncAudit = await benchAsyncAudit(dbUrl, body);
    const verify = (await (
      await fetch(`${url}/v1/admin/audit/verify`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json()) as {
      ok: boolean;
      count: number;
    };
    console.log(
      `   audit chain after the run: ${verify.ok ? "verified" : "BROKEN"}, ${fmt(verify.count)} events (every 2xx answer above has one)`,
    );
    return { bare, auth, auth1, bare1 };
  } finally {
    await server.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// 6. The proxy in the call path
// ---------------------------------------------------------------------------------------------

/**
 * The gateway in the call path: the same GET through /v1/proxy/stripe and straight to the
 * stand-in Stripe (both in the bench server's process); latency at 1 connection, throughput at 50.
 */
async function benchProxy(dbUrl: string) {
  console.log(
    "\n6. Proxy overhead: GET /v1/charges through /v1/proxy/stripe vs straight to a stand-in Stripe (PostgreSQL)",
  );
  // The stand-in in its own process (with the load, when pinned) and Butler on its own core: a
  // real provider's work is done elsewhere, not in Butler's process.
  const standIn = await startStandIn("sk_test_bench");
  const server = await startBenchServer(dbUrl, { pin: true, stripeUrl: standIn.url }).catch(async (e) => {
    await standIn.stop();
    throw e;
  });
  console.log(
    PINNING
      ? `   pinned with taskset: the server on core ${PINNING.server}; the stand-in Stripe and this process (the load) on core ${PINNING.load}`
      : "   not pinned (one core, or no taskset); the stand-in Stripe runs in its own process",
  );
  const { url, adminToken, stripeUrl, stripeKey, proxyToken } = server.info;
  try {
    const direct = `${stripeUrl}/v1/charges?limit=3`;
    const proxied = `${url}/v1/proxy/stripe/v1/charges?limit=3`;
    await sequential(direct, stripeKey, undefined, 1);
    await sequential(proxied, proxyToken, undefined, 1);
    const d1 = await sequential(direct, stripeKey, undefined, Math.max(2, SECONDS / 2));
    const p1 = await sequential(proxied, proxyToken, undefined, Math.max(2, SECONDS / 2));
    await cannon(direct, stripeKey, undefined, 1);
    await cannon(proxied, proxyToken, undefined, 1);
    const d50 = await cannon(direct, stripeKey, undefined, SECONDS);
    const p50 = await cannon(proxied, proxyToken, undefined, SECONDS);
    const row1 = (name: string, r: Sequential) =>
      console.log(
        `   ${name.padEnd(38)} ${fmt(r.perSecond)} req/s   p50 ${fmt(r.p50, 2)} ms   p99 ${fmt(r.p99, 2)} ms`,
      );
    const row = (name: string, r: autocannon.Result) =>
      console.log(
        `   ${name.padEnd(38)} ${fmt(r.requests.average)} req/s   p50 ${fmt(r.latency.p50, 2)} ms   p99 ${fmt(r.latency.p99, 2)} ms   errors ${r.errors + r.non2xx}`,
      );
    row1("baseline: stand-in, 1 connection", d1);
    row1("through the proxy, 1 connection", p1);
    row("baseline: stand-in, 50 connections", d50);
    row("through the proxy, 50 connections", p50);
    const proxy = {
      overheadMean: p1.mean - d1.mean,
      overheadP50: p1.p50 - d1.p50,
      overheadP99: p1.p99 - d1.p99,
      ratio: p50.requests.average / d50.requests.average,
      p99: p50.latency.p99,
    };
    console.log(
      `   overhead at 1 connection: mean +${fmt(proxy.overheadMean, 2)} ms, p50 +${fmt(proxy.overheadP50, 2)} ms (target < 1 ms), p99 +${fmt(proxy.overheadP99, 2)} ms (target < 3 ms)`,
    );
    console.log(`   throughput at 50 connections: ${fmt(proxy.ratio, 2)}x the direct calls (target >= 0.5x)`);
    const verify = (await (
      await fetch(`${url}/v1/admin/audit/verify`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json()) as { ok: boolean; count: number };
    console.log(
      `   audit chain after the run: ${verify.ok ? "verified" : "BROKEN"}, ${fmt(verify.count)} events (each proxied call writes two durable lines: the decision and the upstream outcome)`,
    );
    return proxy;
  } finally {
    await server.stop();
    await standIn.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Audit append rate
// ---------------------------------------------------------------------------------------------

async function benchAudit(dbUrl: string) {
  console.log("\n3. Audit append rate on PostgreSQL (durable, hash-chained)");
  const log = createLogger("warn");
  const database = postgresDatabase(new pg.Pool({ connectionString: dbUrl, max: 10 }), dbUrl, log);
  await migrate(database);
  const run = async (batchMax: number, total: number, concurrency: number) => {
    const audit = createAuditLog({ database, clock: systemClock, log, batchMax, queueMax: 1_000_000 });
    const start = process.hrtime.bigint();
    let next = 0;
    const worker = async () => {
      while (next < total) {
        next++;
        await audit.append({
          type: "bench.event",
          agent: "a",
          project: "p",
          action: "x:y",
          resource: "r",
          decision: "ALLOW",
          reason: "bench",
          httpStatus: 200,
        });
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    await audit.close();
    return total / seconds;
  };
  const single = await run(1, 2_000, 50);
  const grouped = await run(1000, 100_000, 500);
  console.log(`   baseline: one transaction per event   ${fmt(single)} events/s`);
  console.log(`   group commit (500 writers)            ${fmt(grouped)} events/s`);
  console.log(`   ratio group / single:                 ${fmt(grouped / single, 1)}x`);
  const v = await verifyAuditChain(database.db);
  console.log(`   chain: ${v.ok ? "verified" : "BROKEN"} through ${fmt(v.verifiedThrough)}`);
  await database.close();
  return grouped;
}

// ---------------------------------------------------------------------------------------------
// 4. Approval to first ALLOW on another instance
// ---------------------------------------------------------------------------------------------

async function benchApprovalPropagation(dbUrl: string) {
  console.log("\n4. Approval commit to the first ALLOW on a second instance (PostgreSQL, 200 approvals)");
  const log = createLogger("warn");
  const dir = await mkdtemp(join(tmpdir(), "butler-bench-policies-"));
  await writeFile(join(dir, "project-billing.yaml"), await readFile("policies/project-billing.yaml", "utf8"));
  const open = () => postgresDatabase(new pg.Pool({ connectionString: dbUrl, max: 10 }), dbUrl, log);
  const instance = async (database: ReturnType<typeof open>) => {
    const s = createServices({
      config: { audit: { batchMax: 1000, queueMax: 100_000, durability: "sync" }, policiesDir: dir },
      database,
      log,
      clock: systemClock,
      actor: "bench",
      publicUrl: () => "http://bench",
    });
    await s.changes.start();
    await s.policies.refreshAll();
    return s;
  };
  const dbA = open();
  const dbB = open();
  const a = await instance(dbA);
  const b = await instance(dbB);
  await a.policies.importDirectory("bench");
  const agent = { agent: "billing-reconciler-1", project: "project-billing", tokenId: "tok_bench000000000" };
  const steady: number[] = [];
  const toAllow: number[] = [];
  let extraCalls = 0;
  for (let i = 0; i < 200; i++) {
    const call = { action: "git:push", resource: "reidataai/billing-ledger", branch: `release-${i}` };
    const denied = await b.gateway.authorize(agent, call);
    const filed = await a.butler.submit(agent, {
      ttl: "PT1H",
      reason: "bench",
      denial_event_id: denied.event_id,
    });
    if (filed.status === "already_allowed") throw new Error("unexpected");
    await a.butler.review({ approver: "jordan", channel: "api" }, filed.request.id, "approve");
    const t0 = process.hrtime.bigint();
    for (;;) {
      const d = await b.gateway.authorize(agent, call);
      if (d.decision === "ALLOW") break;
      if (process.env.BENCH_DEBUG) console.log("   denied after approval:", d.reason, d.revision);
      extraCalls++;
    }
    toAllow.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const s0 = process.hrtime.bigint();
    await b.gateway.authorize(agent, call);
    steady.push(Number(process.hrtime.bigint() - s0) / 1e6);
  }
  toAllow.sort((x, y) => x - y);
  steady.sort((x, y) => x - y);
  console.log(
    `   baseline: an ALLOW on instance 2 (durable audit)   p50 ${fmt(percentile(steady, 0.5), 2)} ms   p99 ${fmt(percentile(steady, 0.99), 2)} ms`,
  );
  console.log(
    `   approval commit → first ALLOW on instance 2        p50 ${fmt(percentile(toAllow, 0.5), 2)} ms   p99 ${fmt(percentile(toAllow, 0.99), 2)} ms   (target p99 < 100 ms)`,
  );
  console.log(
    `   calls denied after an approval had committed: ${extraCalls} of 200 (the first call after approval is allowed)`,
  );
  for (const s of [a, b]) {
    await s.audit.close();
    await s.changes.stop();
  }
  await dbA.close();
  await dbB.close();
  await rm(dir, { recursive: true, force: true });
  return { p50: percentile(toAllow, 0.5), p99: percentile(toAllow, 0.99) };
}

// ---------------------------------------------------------------------------------------------
// 5. Approval commit to the agent's A2A update
// ---------------------------------------------------------------------------------------------

async function benchA2ANotification(dbUrl: string) {
  const rounds = 200;
  console.log(
    `\n5. Approval commit to the agent's A2A update (PostgreSQL, real server and SDK client, ${rounds} approvals)`,
  );
  const pushes = new Map<string, number>();
  const receiver = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => {
      raw += c;
    });
    req.on("end", () => {
      const at = process.hrtime.bigint();
      const body = JSON.parse(raw) as { statusUpdate?: { taskId: string; status: { state: string } } };
      if (body.statusUpdate?.status.state === "TASK_STATE_COMPLETED")
        pushes.set(body.statusUpdate.taskId, Number(at) / 1e6);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const pushUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/push`;
  const dataDir = await mkdtemp(join(tmpdir(), "butler-bench-a2a-"));
  const server = await startServer(
    loadConfig({
      DATABASE_URL: dbUrl,
      BUTLER_DATA_DIR: dataDir,
      POLICIES_DIR: "policies",
      POLICY_WATCH: "false",
      PORT: "0",
      LOG_LEVEL: "warn",
      BUTLER_A2A_PUSH_ALLOWLIST: new URL(pushUrl).host,
    }),
    createLogger("warn"),
  );
  const { token } = await server.services.admin.createAgentToken("billing-reconciler-1", "project-billing");
  const client = await a2aClient(server.url, token);
  const identity = {
    agent: "billing-reconciler-1",
    project: "project-billing",
    tokenId: "tok_bench000000000",
  };
  const toStream: number[] = [];
  const toPush: number[] = [];
  const getTask: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const call = { action: "git:push", resource: "reidataai/billing-ledger", branch: `a2a-${i}` };
    const denied = await server.services.gateway.authorize(identity, call);
    const task = (await client.sendMessage({
      ...ask({ ttl: "PT1H", reason: "bench", denial_event_id: denied.event_id }),
      configuration: withPush(pushUrl),
    })) as Task;
    const g0 = process.hrtime.bigint();
    await client.getTask({ tenant: "", id: task.id, historyLength: 0 });
    getTask.push(Number(process.hrtime.bigint() - g0) / 1e6);
    let snapshot!: () => void;
    const subscribed = new Promise<void>((r) => {
      snapshot = r;
    });
    let arrived = 0;
    const stream = (async () => {
      for await (const ev of client.resubscribeTask({ tenant: "", id: task.id })) {
        if (ev.payload?.$case === "task") snapshot();
        if (
          ev.payload?.$case === "statusUpdate" &&
          ev.payload.value.status?.state === TaskState.TASK_STATE_COMPLETED
        )
          arrived = Number(process.hrtime.bigint()) / 1e6;
      }
    })();
    await subscribed;
    await server.services.butler.review(
      { approver: "jordan", channel: "api" },
      task.metadata!.butler.request_id as string,
      "approve",
    );
    const committed = Number(process.hrtime.bigint()) / 1e6;
    await stream;
    toStream.push(arrived - committed);
    while (!pushes.has(task.id)) await new Promise((r) => setTimeout(r, 1));
    toPush.push(pushes.get(task.id)! - committed);
  }
  for (const a of [toStream, toPush, getTask]) a.sort((x, y) => x - y);
  const row = (label: string, a: number[]) =>
    console.log(
      `   ${label.padEnd(52)} p50 ${fmt(percentile(a, 0.5), 2)} ms   p99 ${fmt(percentile(a, 0.99), 2)} ms`,
    );
  row("baseline: GetTask round trip over A2A", getTask);
  row("approval commit → COMPLETED on the open stream", toStream);
  row("approval commit → COMPLETED push received", toPush);
  console.log("   (target p99 < 100 ms)");
  await server.close();
  await new Promise<void>((r) => receiver.close(() => r()));
  await rm(dataDir, { recursive: true, force: true });
  return {
    stream: { p50: percentile(toStream, 0.5), p99: percentile(toStream, 0.99) },
    push: { p50: percentile(toPush, 0.5), p99: percentile(toPush, 0.99) },
  };
}

/**
 * BENCH_ONLY=1,5 runs only those sections (1-5 and `scale` by default, 6 with 2; `soak` runs the
 * soak, see soak.ts).
 */
const only = new Set((process.env.BENCH_ONLY ?? "1,2,3,4,5,8,9,scale").split(",").map((x) => x.trim()));
const decisions = only.has("1") ? benchDecisions() : undefined;
const pre = only.has("8") ? await benchPreChecks(SECONDS) : undefined;
const db = await createPostgresDatabase(ADMIN_URL, "butler_bench");
try {
  let http: Awaited<ReturnType<typeof benchHttp>> | undefined;
  if (only.has("2")) {
    const unpin = pinLoadGenerator();
    http = await benchHttp(db.url).finally(unpin);
  }
  let proxy: Awaited<ReturnType<typeof benchProxy>> | undefined;
  if (only.has("2") || only.has("6")) {
    const unpin = pinLoadGenerator();
    proxy = await benchProxy(db.url).finally(unpin);
  }
  const audit = only.has("3") ? await benchAudit(db.url) : undefined;
  const propagation = only.has("4") ? await benchApprovalPropagation(db.url) : undefined;
  let a2a: Awaited<ReturnType<typeof benchA2ANotification>> | undefined;
  if (only.has("5")) {
    const a2aDb = await createPostgresDatabase(ADMIN_URL, "butler_bench_a2a");
    a2a = await benchA2ANotification(a2aDb.url).finally(() => a2aDb.drop());
  }
  let simulation: Awaited<ReturnType<typeof benchSimulation>> | undefined;
  if (only.has("9")) {
    const simDb = await createPostgresDatabase(ADMIN_URL, "butler_bench_sim");
    simulation = await benchSimulation(simDb.url).finally(() => simDb.drop());
  }
  const scale = only.has("scale") ? await benchScale(ADMIN_URL, SECONDS) : undefined;
  if (only.has("soak")) {
    const soakDb = await createPostgresDatabase(ADMIN_URL, "butler_bench_soak");
    await runSoak(soakDb.url).finally(() => soakDb.drop());
  }
  console.log("\nSummary");
  if (decisions)
    console.log(
      `   in-process decisions/s:      ${fmt(decisions.hot.perSecond)} warm (memo; 200 calls over 1,000 projects; p99 ${fmt(decisions.hot.p99)} ns) = ${fmt(decisions.hot.perSecond / decisions.plainHot.perSecond, 2)}x without memo (${fmt(decisions.plainHot.perSecond)}; target >= 5,000,000); cold ${fmt(decisions.cold.memo)} = ${fmt(decisions.cold.memo / decisions.cold.plain, 2)}x without memo, ${fmt(decisions.cold.memo / decisions.cold.before, 2)}x the engine before the memo (target >= 1.00x)`,
    );
  if (pre)
    console.log(
      `   steps before the policy:     pact +${fmt(pre.pact - pre.base, 2)} µs/call, pact and data_protection +${fmt(pre.dp - pre.base, 2)} µs/call over ${fmt(pre.base, 2)} µs (target < 20 µs; no database round trip); drift +${fmt(pre.drift, 2)} µs/call, trust +${fmt(pre.trust, 2)} µs/call (${pre.trustReads} read in ${pre.trustCalls} calls)`,
    );
  if (http)
    console.log(
      `   authorize req/s:             ${fmt(http.auth.requests.average)}  = ${fmt(http.auth.requests.average / http.bare.requests.average, 2)}x bare fastify (${fmt(http.bare.requests.average)}; target >= 0.5x); p50 ${fmt(http.auth.latency.p50, 2)} ms, p99 ${fmt(http.auth.latency.p99, 2)} ms`,
    );
  if (http)
    console.log(
      `   authorize at 1 connection:   p50 ${fmt(http.auth1.p50, 2)} ms, p99 ${fmt(http.auth1.p99, 2)} ms (bare: p50 ${fmt(http.bare1.p50, 2)} ms, p99 ${fmt(http.bare1.p99, 2)} ms; target p50 < 1 ms)`,
    );
  if (asyncAudit)
    console.log(
      `   authorize, async audit:      ${fmt(asyncAudit.auth.requests.average)} req/s = ${fmt(asyncAudit.auth.requests.average / asyncAudit.bare.requests.average, 2)}x bare fastify (${fmt(asyncAudit.bare.requests.average)}; target >= 0.8x); p50 ${fmt(asyncAudit.auth.latency.p50, 2)} ms, p99 ${fmt(asyncAudit.auth.latency.p99, 2)} ms; 1 connection p50 ${fmt(asyncAudit.auth1.p50, 2)} ms`,
    );
  if (audit !== undefined) console.log(`   audit appends/s:             ${fmt(audit)}`);
  if (propagation)
    console.log(
      `   approval → first ALLOW on another instance: p50 ${fmt(propagation.p50, 2)} ms, p99 ${fmt(propagation.p99, 2)} ms`,
    );
  if (proxy)
    console.log(
      `   proxy overhead (1 connection): mean +${fmt(proxy.overheadMean, 2)} ms, p50 +${fmt(proxy.overheadP50, 2)} ms, p99 +${fmt(proxy.overheadP99, 2)} ms; at 50 connections ${fmt(proxy.ratio, 2)}x the direct throughput, p99 ${fmt(proxy.p99, 2)} ms`,
    );
  if (a2a)
    console.log(
      `   approval → agent's A2A update: stream p50 ${fmt(a2a.stream.p50, 2)} ms, p99 ${fmt(a2a.stream.p99, 2)} ms; push p50 ${fmt(a2a.push.p50, 2)} ms, p99 ${fmt(a2a.push.p99, 2)} ms`,
    );
  for (const sim of simulation ?? [])
    console.log(
      `   policy simulate, 30 days:    ${sim.engine} ${fmt(sim.seconds, 2)} s over ${fmt(sim.calls)} audit lines = ${fmt(sim.seconds / sim.count, 2)}x counting them (${fmt(sim.count, 2)} s; target < 5 s)`,
    );
  if (scale)
    console.log(
      `   scale-out authorize req/s:   ${scale.map((r) => `${r.instances} instance(s) ${fmt(r.perSecond)} (${fmt(r.perSecond / scale[0]!.perSecond, 2)}x, p99 ${fmt(r.p99, 2)} ms)`).join("; ")}; approval → ALLOW elsewhere p50/max ${scale.map((r) => `${fmt(r.propagation.p50, 1)}/${fmt(r.propagation.max, 1)} ms`).join(", ")}`,
    );
} finally {
  await db.drop();
}
