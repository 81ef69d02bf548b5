import type { Logger } from "./logger.js";

/** A started part of the process: what `stop` undoes. */
export interface Started<T> {
  value: T;
  stop?: () => Promise<void>;
}

/**
 * The parts of a running process, started in order and stopped in reverse: on close, or when a
 * later part fails to start (then what did start is stopped and the error is rethrown). A part
 * that fails to stop is logged by name and the others still stop.
 */
export function lifecycle(log: Logger) {
  const parts: { name: string; stop: () => Promise<void> }[] = [];
  let stopping: Promise<void> | undefined;
  return {
    /**
     * Starts a part now; its `stop` runs when the process stops. A part that fails to start
     * undoes what it did itself before throwing (nothing of it is registered).
     */
    async start<T>(name: string, run: () => Promise<Started<T>>): Promise<T> {
      const started = await run();
      if (started.stop) parts.push({ name, stop: started.stop });
      return started.value;
    },
    /** Stops every started part, newest first (once; later calls wait for the same stop). */
    stopAll(): Promise<void> {
      stopping ??= (async () => {
        for (const part of parts.reverse())
          await part.stop().catch((e) => log.error({ err: e, part: part.name }, "shutdown step failed"));
      })();
      return stopping;
    },
  };
}

export type Lifecycle = ReturnType<typeof lifecycle>;
