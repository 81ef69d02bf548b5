/**
 * `npm run bench:start`: how long a new user waits. Runs the installed command (bin/butler.js over
 * dist/, as `npm start` does) on the embedded database:
 *
 * - `butler serve` from a fresh data directory, 5 times: from the spawn to the first healthy
 *   answer of GET /healthz;
 * - `butler serve` from a warm data directory (the one the last fresh start made), 5 times;
 * - `butler --help` and `butler policy validate policies/`, 5 times each.
 *
 * Prints min / median / max of each. Baseline in the same run: `node -e ""` (what starting Node
 * alone costs on this machine). Build first (`npm run build`); the bench does not.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";

const BIN = join(process.cwd(), "bin", "butler.js");
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const run = promisify(execFile);

/** Starts `butler serve` on `dataDir`; resolves with the milliseconds until /healthz said ok. */
async function serveOnce(dataDir: string): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, "serve"], {
    env: {
      ...process.env,
      BUTLER_DATA_DIR: dataDir,
      POLICIES_DIR: join(process.cwd(), "policies"),
      PORT: "0",
      LOG_LEVEL: "warn",
      LOG_FORMAT: "json",
      DATABASE_URL: "",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        const m = /Butler is serving at (\S+)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
      child.on("exit", (code) => reject(new Error(`butler serve exited (${code}): ${stderr}`)));
    });
    for (;;) {
      const r = await fetch(`${url}/healthz`).catch(() => undefined);
      if (r?.ok) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    return performance.now() - started;
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

async function timed(argv: string[]): Promise<number> {
  const started = performance.now();
  await run(process.execPath, argv, { env: { ...process.env, DATABASE_URL: "" } });
  return performance.now() - started;
}

function summary(name: string, ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const f = (x: number) => `${Math.round(x)} ms`.padStart(8);
  return `${name.padEnd(44)} min ${f(s[0]!)}  median ${f(s[Math.floor(s.length / 2)]!)}  max ${f(s.at(-1)!)}`;
}

const home = await mkdtemp(join(tmpdir(), "butler-bench-start-"));
try {
  const node: number[] = [];
  const help: number[] = [];
  const validate: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    node.push(await timed(["-e", ""]));
    help.push(await timed([BIN, "--help"]));
    validate.push(await timed([BIN, "policy", "validate", "policies/"]));
  }
  const fresh: number[] = [];
  let last = "";
  for (let i = 0; i < RUNS; i++) {
    last = join(home, `fresh-${i}`);
    fresh.push(await serveOnce(last));
  }
  const warm: number[] = [];
  for (let i = 0; i < RUNS; i++) warm.push(await serveOnce(last));
  console.log(`Butler start-up, ${RUNS} runs each (node ${process.version}, ${process.platform})`);
  console.log(summary("baseline: node -e '' (Node alone)", node));
  console.log(summary("butler --help", help));
  console.log(summary("butler policy validate policies/", validate));
  console.log(summary("serve, fresh data directory -> healthy", fresh));
  console.log(summary("serve, warm data directory -> healthy", warm));
} finally {
  await rm(home, { recursive: true, force: true });
}
