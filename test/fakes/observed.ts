/**
 * What a fake platform offers a test instead of polling: `next(check)` resolves as soon as `check`
 * holds, tested now and again each time the fake has answered a call (its state changes only
 * then). The deadline is a guard that names what never arrived, not a polling interval.
 */
export class Observed {
  #listeners = new Set<() => void>();

  /** Called by the fake after each answered call. */
  protected changed(): void {
    for (const l of [...this.#listeners]) l();
  }

  /** Calls `listener` after each change; returns how to stop. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  next(check: () => boolean, what: string, ms?: number): Promise<void> {
    return whenAll([this], check, what, ms);
  }
}

/** Resolves once `check` holds, tested now and after a change of any of `fakes`. */
export function whenAll(
  fakes: readonly Observed[],
  check: () => boolean,
  what: string,
  ms = 10_000,
): Promise<void> {
  try {
    if (check()) return Promise.resolve();
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    const stops: (() => void)[] = [];
    const done = () => {
      clearTimeout(timer);
      for (const stop of stops) stop();
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const test = () => {
      try {
        if (!check()) return;
      } catch (e) {
        done();
        reject(e);
        return;
      }
      done();
      resolve();
    };
    for (const f of fakes) stops.push(f.onChange(test));
  });
}
