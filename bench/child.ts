import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import { createInterface } from "node:readline";
import type { AuditDurability } from "../src/config.js";

const TASKSET = "/usr/bin/taskset";

/**
 * The method of the figures: the server on one core, the load generator on another, so
 * that neither takes the other's CPU. Undefined (nothing is pinned) when the machine has one core
 * or no taskset.
 */
export const PINNING: { server: string; load: string } | undefined =
  os.cpus().length >= 2 && existsSync(TASKSET) ? { server: "0", load: "1" } : undefined;

/** Pins every thread of this process (the load generator) to the load core; returns the undo. */
export function pinLoadGenerator(): () => void {
  if (!PINNING) return () => {};
  const all = `0-${os.cpus().length - 1}`;
  execFileSync(TASKSET, ["-a", "-cp", PINNING.load, String(process.pid)], { stdio: "ignore" });
  return () => execFileSync(TASKSET, ["-a", "-cp", all, String(process.pid)], { stdio: "ignore" });
}

/** Runs `script` (through tsx) on `core` if given; resolves with the first line it prints. */
async function startChild(
  script: string,
  args: string[],
  core: string | undefined,
): Promise<{ child: ChildProcess; first: string }> {
  const argv = ["--import", "tsx", script, ...args];
  const child = core
    ? spawn(TASKSET, ["-c", core, process.execPath, ...argv], { stdio: ["ignore", "pipe", "inherit"] })
    : spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return { child, first };
}

/**
 * The stand-in Stripe in a process of its own (bench/stand-in.ts), on the load core when pinning:
 * a provider's work is not Butler's.
 */
export async function startStandIn(key: string): Promise<{ url: string; stop(): Promise<void> }> {
  const { child, first } = await startChild("bench/stand-in.ts", [key], PINNING?.load);
  return {
    url: (JSON.parse(first) as { url: string }).url,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

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

/**
 * Starts bench/server.ts (the real server on `dbUrl`, and a bare endpoint) in a child process,
 * pinned to the server core when `pin` is set (see PINNING), with AUDIT_DURABILITY `durability`
 * (default sync).
 */
export async function startBenchServer(
  dbUrl: string,
  opts: { durability?: AuditDurability; pin?: boolean; stripeUrl?: string } = {},
): Promise<{ child: ChildProcess; info: BenchServer; stop(): Promise<void> }> {
  const args = [dbUrl, opts.durability ?? "sync", ...(opts.stripeUrl ? [opts.stripeUrl] : [])];
  const { child, first } = await startChild("bench/server.ts", args, opts.pin ? PINNING?.server : undefined);
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
