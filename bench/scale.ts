/**
 * Scale-out (`BENCH_ONLY=scale`; part of `npm run bench`): 1, 2 and 4 Butler server processes on
 * one PostgreSQL database, behind no proxy.
 *
 * For each instance count, a fresh database and a fresh temporary directory (one policies
 * directory that every instance serves, and a data directory per instance); each instance is the
 * real server (bench/scale-server.ts) in its own process, pinned to one core with `taskset -c`
 * (instance i on core i mod the number of cores, so with more instances than cores some share a
 * core). The load generator is autocannon in this process, unpinned: one run per instance, all at
 * the same time, the 50 connections split evenly between them. Measured:
 *
 * - total `POST /v1/authorize` throughput (ALLOW, durable audit) at 50 connections: the sum of the
 *   runs' requests per second, and its ratio to the 1-instance figure of the same run (the
 *   baseline); p50 and p99 over every response of every run (exact, from each response's time as
 *   autocannon measured it, not the worst run's percentile);
 * - approval to ALLOW elsewhere: the agent is denied a call on every instance, files an access
 *   request on instance A (citing the denial from another instance), and an approver approves it
 *   through A's admin API; from the moment A's answer arrives, every other instance is asked the
 *   same call (at once, again on DENY) until it answers ALLOW. p50 and max over all (sample,
 *   instance) pairs; baseline: a plain ALLOW round trip on those instances. With 1 instance
 *   "elsewhere" is the same instance.
 *
 * Every child is stopped (SIGTERM, then SIGKILL after 10 s) and every temporary directory and
 * database removed whether or not a step fails; a child also stops when its standard input closes,
 * so none outlives a bench process that was killed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os, { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import autocannon from "autocannon";
import { createPostgresDatabase } from "../test/helpers/pg-database.js";
import { percentile } from "./child.js";

const TASKSET = "/usr/bin/taskset";
const CONNECTIONS = 50;
const COUNTS = [1, 2, 4] as const;
const AGENT = "billing-reconciler-1";
const PROJECT = "project-billing";
const ALLOWED = JSON.stringify({
  action: "aws:s3:GetObject",
  resource: "arn:aws:s3:::ledger-internal/2026/05.csv",
});

export interface ScaleRow {
  instances: number;
  /** Total authorize requests per second over all instances. */
  perSecond: number;
  p50: number;
  p99: number;
  /** Connection errors, timeouts and non-2xx answers, summed over the runs. */
  errors: number;
  /** Approval answered on one instance → ALLOW from another, in ms. */
  propagation: { p50: number; max: number; samples: number; deniedAfter: number };
  /** A plain ALLOW round trip on the instances asked above, p50 in ms. */
  steadyP50: number;
}

interface Instance {
  url: string;
  adminToken: string;
  core: number;
  child: ChildProcess;
}

/** Children still running: SIGKILLed if this process exits without having stopped them. */
const running = new Set<ChildProcess>();
let exitHookSet = false;
/** Set by Ctrl-C: no instance starts after it. */
let interrupted = false;

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** Starts one instance pinned to `core`; the child goes into `children` (and `running`) at once. */
async function startInstance(
  children: ChildProcess[],
  dbUrl: string,
  policiesDir: string,
  dataDir: string,
  core: number,
): Promise<Instance> {
  if (interrupted) throw new Error("interrupted");
  const child = spawn(
    TASKSET,
    [
      "-c",
      String(core),
      process.execPath,
      "--import",
      "tsx",
      "bench/scale-server.ts",
      dbUrl,
      policiesDir,
      dataDir,
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  children.push(child);
  running.add(child);
  child.once("exit", () => running.delete(child));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`instance on core ${core} did not serve within 120 s`)),
      120_000,
    );
    createInterface({ input: child.stdout! }).once("line", (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`instance on core ${core} exited (${code ?? signal}) before serving`));
    });
  });
  // taskset execs the command, so the child's pid is the server's: check that the pinning held.
  const status = await readFile(`/proc/${child.pid}/status`, "utf8");
  const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1];
  if (allowed !== String(core))
    throw new Error(`instance ${child.pid} runs on cores ${allowed}, not on core ${core} alone`);
  const info = JSON.parse(line) as { url: string; adminToken: string };
  return { ...info, core, child };
}

/** SIGTERM, then SIGKILL if it has not exited within 10 s; resolves once it has exited. */
async function stopChild(child: ChildProcess): Promise<void> {
  // No pid: the spawn itself failed, and there is no process (nor any 'exit' to wait for).
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function call(
  url: string,
  bearer: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, any> }> {
  const r = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as Record<string, any> };
}

async function expectOk(
  what: string,
  p: Promise<{ status: number; body: Record<string, any> }>,
): Promise<Record<string, any>> {
  const r = await p;
  if (r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** One autocannon run; every response's time (ms, fractional) is pushed to `latencies`. */
function cannon(
  url: string,
  token: string,
  seconds: number,
  connections: number,
  latencies?: number[],
): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url,
        method: "POST",
        connections,
        duration: seconds,
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: ALLOWED,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    if (latencies) instance.on("response", (_client, _status, _bytes, ms) => latencies.push(ms));
  });
}

/** The 50 connections split as evenly as they go: 50; 25, 25; 13, 13, 12, 12. */
function split(n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.floor(CONNECTIONS / n) + (i < CONNECTIONS % n ? 1 : 0));
}

async function throughput(instances: Instance[], token: string, seconds: number) {
  const conns = split(instances.length);
  const run = (s: number, latencies?: number[]) =>
    Promise.all(
      instances.map((inst, i) => cannon(`${inst.url}/v1/authorize`, token, s, conns[i]!, latencies)),
    );
  await run(2); // warm-up: the JIT, the pools and the caches of every instance
  const latencies: number[] = [];
  const results = await run(seconds, latencies);
  latencies.sort((a, b) => a - b);
  return {
    perSecond: results.reduce((sum, r) => sum + r.requests.average, 0),
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    errors: results.reduce((sum, r) => sum + r.errors + r.timeouts + r.non2xx, 0),
    conns,
  };
}

async function propagation(instances: Instance[], token: string, samples: number, tag: string) {
  const n = instances.length;
  const toAllow: number[] = [];
  const steady: number[] = [];
  let deniedAfter = 0;
  for (let i = 0; i < samples; i++) {
    const a = i % n;
    const approver = instances[a]!;
    const elsewhere = n === 1 ? [approver] : instances.filter((_, j) => j !== a);
    const push = { action: "git:push", resource: "reidataai/billing-ledger", branch: `scale-${tag}-${i}` };
    // Denied on every instance first, so that each has answered from the revision before the grant.
    const denials = await Promise.all(
      instances.map((inst) => expectOk("authorize", call(`${inst.url}/v1/authorize`, token, push))),
    );
    for (const d of denials)
      if (d.decision !== "DENY")
        throw new Error(`expected DENY before the approval, got ${JSON.stringify(d)}`);
    const filed = await expectOk(
      "file an access request",
      call(`${approver.url}/v1/access-requests`, token, {
        ttl: "PT1H",
        reason: "scale-out bench",
        denial_event_id: denials[(a + 1) % n]!.event_id,
      }),
    );
    const id = filed.access_request?.id as string | undefined;
    if (!id) throw new Error(`no access request filed: ${JSON.stringify(filed)}`);
    const decided = await expectOk(
      "approve",
      call(`${approver.url}/v1/admin/access-requests/${id}/approve`, approver.adminToken, {
        approver: "jordan",
      }),
    );
    if (decided.outcome !== "approved")
      throw new Error(`the approval did not grant: ${JSON.stringify(decided)}`);
    const t0 = performance.now();
    await Promise.all(
      elsewhere.map(async (inst) => {
        for (let tries = 0; ; tries++) {
          const d = await expectOk("authorize", call(`${inst.url}/v1/authorize`, token, push));
          if (d.decision === "ALLOW") break;
          deniedAfter++;
          if (tries >= 1000) throw new Error(`instance on core ${inst.core} still denies after 1000 calls`);
        }
        toAllow.push(performance.now() - t0);
      }),
    );
    for (const inst of elsewhere) {
      const s0 = performance.now();
      await expectOk("authorize", call(`${inst.url}/v1/authorize`, token, push));
      steady.push(performance.now() - s0);
    }
  }
  toAllow.sort((x, y) => x - y);
  steady.sort((x, y) => x - y);
  return {
    propagation: {
      p50: percentile(toAllow, 0.5),
      max: toAllow.at(-1)!,
      samples: toAllow.length,
      deniedAfter,
    },
    steadyP50: percentile(steady, 0.5),
  };
}

/** Starts `count` instances on a fresh database, measures, and stops them all, whatever happens. */
async function measure(
  adminUrl: string,
  count: number,
  seconds: number,
  approvals: number,
): Promise<ScaleRow> {
  const cores = os.availableParallelism();
  const db = await createPostgresDatabase(adminUrl, "butler_bench_scale");
  const children: ChildProcess[] = [];
  let root: string | undefined;
  try {
    const dir = await mkdtemp(join(tmpdir(), "butler-bench-scale-"));
    root = dir;
    const policiesDir = join(dir, "policies");
    await mkdir(policiesDir);
    await copyFile("policies/project-billing.yaml", join(policiesDir, "project-billing.yaml"));
    // allSettled: every spawned child is stopped below, also when another one failed to start.
    const t0 = performance.now();
    const settled = await Promise.allSettled(
      Array.from({ length: count }, (_, i) =>
        startInstance(children, db.url, policiesDir, join(dir, `data-${i}`), i % cores),
      ),
    );
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    const instances = settled.map((s) => (s as PromiseFulfilledResult<Instance>).value);
    const first = instances[0]!;
    const { token } = await expectOk(
      "create the agent token",
      call(`${first.url}/v1/admin/agents`, first.adminToken, { agent: AGENT, project: PROJECT }),
    );
    const t1 = performance.now();
    const t = await throughput(instances, token as string, seconds);
    const t2 = performance.now();
    const p = await propagation(instances, token as string, approvals, String(count));
    const took = (from: number, to: number) => `${fmt((to - from) / 1000, 1)} s`;
    console.log(
      `   ${count} instance(s) on cores ${instances.map((i) => i.core).join(",")}, connections ${t.conns.join("+")}: ${fmt(t.perSecond)} req/s, p99 ${fmt(t.p99, 2)} ms; approval → ALLOW elsewhere p50 ${fmt(p.propagation.p50, 2)} ms, max ${fmt(p.propagation.max, 2)} ms (started in ${took(t0, t1)}, approvals took ${took(t2, performance.now())})`,
    );
    return { instances: count, perSecond: t.perSecond, p50: t.p50, p99: t.p99, errors: t.errors, ...p };
  } finally {
    try {
      await Promise.all(children.map(stopChild));
      if (root) await rm(root, { recursive: true, force: true });
    } finally {
      await db.drop();
    }
  }
}

export async function benchScale(adminUrl: string, benchSeconds: number): Promise<ScaleRow[]> {
  const seconds = Math.max(2, benchSeconds / 2);
  const approvals = Number(process.env.BENCH_SCALE_APPROVALS ?? 20);
  if (!Number.isInteger(approvals) || approvals < 1)
    throw new Error(
      `BENCH_SCALE_APPROVALS must be a whole number of at least 1, not ${process.env.BENCH_SCALE_APPROVALS}`,
    );
  if (!existsSync(TASKSET))
    throw new Error(
      `the scale-out section pins each instance with ${TASKSET} (util-linux), which is missing`,
    );
  const cores = os.availableParallelism();
  console.log(
    `\n7. Scale-out: 1, 2 and 4 server processes on one PostgreSQL database, no proxy (${fmt(seconds)} s per throughput run, ${approvals} approvals per count)`,
  );
  console.log(
    `   each instance pinned with taskset -c to core (i mod ${cores}) of this ${cores}-core machine${cores < 4 ? `: with 4 instances, ${cores === 2 ? "two share each core" : "some share a core"}` : ""}; PostgreSQL and the load generator (autocannon in this process, one run per instance at once, ${CONNECTIONS} connections split evenly) are not pinned and share the same cores`,
  );
  if (!exitHookSet) {
    exitHookSet = true;
    process.once("exit", () => {
      for (const c of running) c.kill("SIGKILL");
    });
  }
  // Ctrl-C: the instances are stopped, so that the step under way fails and the usual clean-up
  // (children, temporary directory, database) runs before the error ends the bench; a second
  // Ctrl-C exits at once (the exit hook above still kills the children).
  const onInterrupt = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.log("\n   interrupted: stopping the instances and cleaning up (Ctrl-C again to exit at once)");
    for (const c of running) c.kill("SIGTERM");
  };
  process.on("SIGINT", onInterrupt);
  try {
    const rows: ScaleRow[] = [];
    for (const count of COUNTS) rows.push(await measure(adminUrl, count, seconds, approvals));
    printTable(rows);
    return rows;
  } finally {
    process.off("SIGINT", onInterrupt);
  }
}

function printTable(rows: ScaleRow[]): void {
  const base = rows[0]!;
  console.log("");
  console.log(
    "   | instances | authorize req/s (50 conn.) | ratio to 1 | p50 | p99 | errors | approval → ALLOW elsewhere p50 | max | plain ALLOW there p50 |",
  );
  console.log("   |---|---|---|---|---|---|---|---|---|");
  for (const r of rows)
    console.log(
      `   | ${r.instances}${r.instances === 1 ? " (baseline)" : ""} | ${fmt(r.perSecond)} | ${fmt(r.perSecond / base.perSecond, 2)}x | ${fmt(r.p50, 2)} ms | ${fmt(r.p99, 2)} ms | ${r.errors} | ${fmt(r.propagation.p50, 2)} ms | ${fmt(r.propagation.max, 2)} ms | ${fmt(r.steadyP50, 2)} ms |`,
    );
  const denied = rows.reduce((s, r) => s + r.propagation.deniedAfter, 0);
  console.log(
    `   p50/p99 over every response of every run (merged, exact); approval → ALLOW over ${rows.map((r) => r.propagation.samples).join(", ")} (sample, instance) pairs; with 1 instance "elsewhere" is the same instance; calls denied after an approval had been answered: ${denied}`,
  );
}
