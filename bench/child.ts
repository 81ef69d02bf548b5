import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

/** What bench/server.ts prints once it serves. */
export interface BenchServer {
  url: string;
  bareUrl: string;
  token: string;
  adminToken: string;
  stripeUrl: string;
  stripeKey: string;
  proxyToken: string;
}

/** Starts bench/server.ts (the real server on `dbUrl`, and a bare endpoint) in a child process. */
export async function startBenchServer(
  dbUrl: string,
): Promise<{ child: ChildProcess; info: BenchServer; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/server.ts", dbUrl], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`bench server exited with ${code}`)));
  });
  return {
    child,
    info: JSON.parse(first) as BenchServer,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

/** The `p` quantile (0..1) of an ascending list. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
