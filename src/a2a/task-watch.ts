import type { ChangeBus } from "../db/changes.js";

/** An async queue a subscription waits on; ends when its signal aborts. */
export class Waiter<T> {
  #items: T[] = [];
  #wake: (() => void) | undefined;
  push(item: T) {
    this.#items.push(item);
    this.#wake?.();
  }
  async next(signal: AbortSignal): Promise<T | undefined> {
    while (this.#items.length === 0) {
      if (signal.aborted) return undefined;
      let onAbort: (() => void) | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        onAbort = () => resolve();
        signal.addEventListener("abort", onAbort, { once: true });
      });
      signal.removeEventListener("abort", onAbort!);
      this.#wake = undefined;
    }
    return this.#items.shift();
  }
}

/**
 * Who on this instance waits for news of a task (open SubscribeToTask streams). Fed by the change
 * bus, so that a change committed by any instance reaches them; a `resync` (changes may have been
 * missed) wakes everyone.
 */
export function createTaskWatch(changes: Pick<ChangeBus, "subscribe">) {
  const listeners = new Map<string, Set<() => void>>();
  changes.subscribe((c) => {
    if (c.kind === "a2a_task") for (const l of listeners.get(c.taskId) ?? []) l();
    else if (c.kind === "resync") for (const set of listeners.values()) for (const l of set) l();
  });
  return {
    /** Calls `fn` on every change of the task until the returned function is called. */
    listen(taskId: string, fn: () => void): () => void {
      const set = listeners.get(taskId) ?? new Set<() => void>();
      listeners.set(taskId, set);
      set.add(fn);
      return () => {
        set.delete(fn);
        if (set.size === 0) listeners.delete(taskId);
      };
    },
  };
}

export type TaskWatch = ReturnType<typeof createTaskWatch>;
