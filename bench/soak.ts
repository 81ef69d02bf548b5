/**
 * The soak (`BENCH_ONLY=soak npm run bench`): a fixed mixed load on the real server (a child
 * process, PostgreSQL) for BENCH_SOAK_MINUTES (default 10), printed minute by minute, to see
 * whether anything degrades as grants and revisions pile up:
 *
 * - POST /v1/authorize at BENCH_SOAK_AUTHORIZE_RATE per second (default 60), open loop (sent on
 *   schedule whether or not earlier ones answered, so a slow server shows as latency);
 * - an access request filed every 1/BENCH_SOAK_FILING_RATE seconds (default 1 per second), each
 *   for its own resource, and decided at once through the admin API: two of three approved (a new
 *   grant, a new revision), one denied.
 *
 * Per minute: authorize answered, p50 and p99; approve/deny p50 and p99; the outbox's lag (age of
 * the oldest undelivered message), the server's resident memory, and the grants in force, the
 * revisions and the bytes of effective text they store (flat: a grant change stores none). The
 * last line compares the last minute with the first (the bar: throughput and p99 within
 * 20%, memory levelling off).
 */
import { readFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { percentile, startBenchServer } from "./child.js";

interface Minute {
  authorized: number;
  authorizeMs: number[];
  decideMs: number[];
  errors: number;
  lagSeconds: number;
  rssMb: number;
  grants: number;
  revisions: number;
  /** Bytes of effective text the revisions store. */
  revisionBytes: number;
}

/** The `q` quantile of unsorted `xs`; NaN (printed "-") for none. */
const quantile = (xs: number[], q: number) =>
  xs.length === 0
    ? Number.NaN
    : percentile(
        [...xs].sort((a, b) => a - b),
        q,
      );

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

export async function runSoak(dbUrl: string): Promise<void> {
  const minutes = Number(process.env.BENCH_SOAK_MINUTES ?? 10);
  const authorizeRate = Number(process.env.BENCH_SOAK_AUTHORIZE_RATE ?? 60);
  const filingRate = Number(process.env.BENCH_SOAK_FILING_RATE ?? 1);
  console.log(
    `\nSoak: ${minutes} min; authorize ${authorizeRate}/s; ${filingRate} access request(s)/s, 2 of 3 approved at once`,
  );
  const server = await startBenchServer(dbUrl);
  const { url, token, adminToken } = server.info;
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  const post = async (path: string, bearer: string, body: unknown) => {
    const r = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };
  const fresh = (): Minute => ({
    authorized: 0,
    authorizeMs: [],
    decideMs: [],
    errors: 0,
    lagSeconds: 0,
    rssMb: 0,
    grants: 0,
    revisions: 0,
    revisionBytes: 0,
  });
  let current = fresh();
  const rows: Minute[] = [];
  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const call = { action: "aws:s3:GetObject", resource: "arn:aws:s3:::ledger-internal/2026/05.csv" };
  let filed = 0;
  const authorizeOnce = async () => {
    const m = current;
    const t = performance.now();
    const r = await post("/v1/authorize", token, call).catch(() => undefined);
    if (r?.status === 200) {
      m.authorized++;
      m.authorizeMs.push(performance.now() - t);
    } else m.errors++;
  };
  const fileAndDecide = async () => {
    const m = current;
    const n = ++filed;
    const f = await post("/v1/access-requests", token, {
      action: "stripe:charges:read",
      resource: `stripe.com/v1/charges/ch_soak_${n}`,
      reason: "soak",
      ttl: "PT24H",
    }).catch(() => undefined);
    const id = f?.body.access_request?.id as string | undefined;
    if (!id) return void m.errors++;
    const verdict = n % 3 === 0 ? "deny" : "approve";
    const t = performance.now();
    const d = await post(`/v1/admin/access-requests/${id}/${verdict}`, adminToken, {
      approver: "jordan",
      ...(verdict === "deny" ? { reason: "soak" } : {}),
    }).catch(() => undefined);
    if (d?.status === 200) m.decideMs.push(performance.now() - t);
    else m.errors++;
  };
  /** Ends the minute being counted: its outbox lag and the server's memory now, printed. */
  const closeMinute = async () => {
    const done = current;
    current = fresh();
    const lag = await db.query<{ s: number }>(
      "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float AS s FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL",
    );
    done.lagSeconds = lag.rows[0]?.s ?? 0;
    done.rssMb = await rssMb(server.child.pid!);
    const stored = await db.query<{ grants: number; revisions: number; bytes: number }>(
      `SELECT (SELECT count(*) FROM grants WHERE revoked_at IS NULL)::int AS grants,
              (SELECT count(*) FROM policy_revisions)::int AS revisions,
              (SELECT coalesce(sum(octet_length(yaml)), 0) FROM policy_revisions)::float AS bytes`,
    );
    done.grants = stored.rows[0]?.grants ?? 0;
    done.revisions = stored.rows[0]?.revisions ?? 0;
    done.revisionBytes = stored.rows[0]?.bytes ?? 0;
    rows.push(done);
    print(rows.length, done);
  };
  const start = performance.now();
  const end = start + minutes * 60_000;
  let nextAuthorize = start;
  let nextFiling = start;
  let nextMinute = start + 60_000;
  try {
    while (performance.now() < end) {
      const now = performance.now();
      while (nextAuthorize <= now) {
        track(authorizeOnce());
        nextAuthorize += 1000 / authorizeRate;
      }
      while (nextFiling <= now) {
        track(fileAndDecide());
        nextFiling += 1000 / filingRate;
      }
      if (now >= nextMinute) {
        nextMinute += 60_000;
        await closeMinute();
      }
      await new Promise((r) =>
        setTimeout(r, Math.max(0, Math.min(nextAuthorize, nextFiling) - performance.now())),
      );
    }
    await Promise.all(inFlight);
    await closeMinute();
  } finally {
    await db.end();
    await server.stop();
  }
  const first = rows[0];
  const last = rows.at(-1);
  if (first && last && rows.length > 1)
    console.log(
      `   last minute / first: throughput ${(last.authorized / first.authorized).toFixed(2)}x, authorize p99 ${(quantile(last.authorizeMs, 0.99) / quantile(first.authorizeMs, 0.99)).toFixed(2)}x, RSS ${first.rssMb.toFixed(0)} -> ${last.rssMb.toFixed(0)} MB (bar: within 20%, memory levelling off)`,
    );
}

function print(n: number, m: Minute): void {
  const f = (x: number) => (Number.isNaN(x) ? "-" : x.toFixed(1));
  console.log(
    `   minute ${String(n).padStart(2)}: authorize ${String(m.authorized).padStart(6)} answered, p50 ${f(quantile(m.authorizeMs, 0.5))} ms, p99 ${f(quantile(m.authorizeMs, 0.99))} ms; decide p50 ${f(quantile(m.decideMs, 0.5))} ms, p99 ${f(quantile(m.decideMs, 0.99))} ms (${m.decideMs.length}); errors ${m.errors}; outbox lag ${m.lagSeconds.toFixed(1)} s; RSS ${m.rssMb.toFixed(0)} MB; ${m.grants} grants in force, ${m.revisions} revisions storing ${(m.revisionBytes / 1024).toFixed(0)} KB of text`,
  );
}
