import { type FileHandle, open } from "node:fs/promises";
import type { Logger } from "../logger.js";
import { type Checkpoint, checkpointLine } from "./checkpoint.js";
import type { CheckpointSink } from "./checkpointer.js";

/**
 * The checkpoint file: JSONL, one checkpoint a line, opened for appending only (O_APPEND, created
 * 0600) and synced to disk after every line. Opening it is the caller's start-up check: a file that
 * cannot be opened stops the start.
 */
export async function openCheckpointFile(path: string, log: Logger): Promise<CheckpointSink> {
  let fh: FileHandle;
  try {
    fh = await open(path, "a", 0o600);
  } catch (e) {
    throw new Error(
      `BUTLER_AUDIT_CHECKPOINT_FILE: cannot open ${path} for appending: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  let tail: Promise<void> = Promise.resolve();
  let closed: Promise<void> | undefined;
  return {
    name: `file ${path}`,
    write(c: Checkpoint) {
      tail = tail.then(async () => {
        try {
          await fh.appendFile(`${checkpointLine(c)}\n`, "utf8");
          await fh.sync();
        } catch (e) {
          log.error(
            { err: e, file: path, head_seq: c.head_seq },
            "audit checkpoint not written to the checkpoint file (it is in the audit log; the next one covers it)",
          );
        }
      });
    },
    idle: () => tail,
    close() {
      closed ??= tail.then(() => fh.close());
      return closed;
    },
  };
}

export interface HttpSinkOptions {
  /** Waits before each retry; the delivery is given up after the last (default 1 s, 5 s, 30 s, 2 min). */
  retryDelaysMs?: readonly number[];
  /** Longest wait for one answer (default 10 s). */
  timeoutMs?: number;
  /** Most checkpoints waiting to be delivered; beyond it the oldest is dropped (logged). */
  queueMax?: number;
}

/**
 * The checkpoint endpoint: each checkpoint is POSTed (JSON, the same object as a line of the
 * checkpoint file) in order, one at a time, retried on network errors, timeouts, 408, 429 and 5xx.
 * Failures are logged, never thrown: nothing waits for this sink. Logs name the endpoint by its
 * host only, since a path can carry a secret.
 */
export function httpCheckpointSink(url: string, log: Logger, opts: HttpSinkOptions = {}): CheckpointSink {
  const delays = opts.retryDelaysMs ?? [1_000, 5_000, 30_000, 120_000];
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const queueMax = opts.queueMax ?? 1_000;
  const host = new URL(url).host;
  const queue: Checkpoint[] = [];
  let working: Promise<void> | undefined;
  let closing = false;
  let wake: (() => void) | undefined;

  function wait(ms: number): Promise<void> {
    if (closing) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      t.unref();
      wake = () => {
        clearTimeout(t);
        wake = undefined;
        resolve();
      };
    });
  }

  async function deliver(c: Checkpoint): Promise<void> {
    const body = checkpointLine(c);
    for (let attempt = 0; ; attempt++) {
      let problem: string;
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
        await res.body?.cancel().catch(() => {});
        if (res.ok) return;
        problem = `answered ${res.status}`;
        if (res.status < 500 && res.status !== 408 && res.status !== 429) {
          log.error(
            { host, head_seq: c.head_seq, status: res.status },
            "the checkpoint endpoint refused a checkpoint; not retried",
          );
          return;
        }
      } catch (e) {
        problem = (e as Error).name === "TimeoutError" ? "timed out" : "could not be reached";
      }
      if (attempt >= delays.length || closing) {
        log.error(
          { host, head_seq: c.head_seq, attempts: attempt + 1, problem },
          "audit checkpoint not delivered to the checkpoint endpoint (it is in the audit log and the checkpoint file)",
        );
        return;
      }
      log.warn(
        { host, head_seq: c.head_seq, attempt: attempt + 1, problem },
        "checkpoint endpoint failed; retrying",
      );
      await wait(delays[attempt]!);
    }
  }

  function work(): void {
    if (working) return;
    working = (async () => {
      while (queue.length > 0) {
        if (closing) {
          log.error(
            { host, checkpoints: queue.length, from_head_seq: queue[0]!.head_seq },
            "shutting down: audit checkpoints not delivered to the checkpoint endpoint (they are in the audit log and the checkpoint file)",
          );
          queue.length = 0;
          return;
        }
        await deliver(queue.shift()!);
      }
    })().finally(() => {
      working = undefined;
    });
  }

  return {
    name: `endpoint ${host}`,
    write(c: Checkpoint) {
      if (queue.length >= queueMax) {
        const dropped = queue.shift()!;
        log.error(
          { host, head_seq: dropped.head_seq },
          "too many checkpoints waiting for the checkpoint endpoint; the oldest is dropped",
        );
      }
      queue.push(c);
      work();
    },
    async idle() {
      while (working) await working;
    },
    async close() {
      // The checkpoint being delivered gets one more try, without waiting; the rest are logged.
      closing = true;
      wake?.();
      while (working) await working;
    },
  };
}
