import type { AgentIdentity } from "../agents/token-service.js";
import type { BoundCall, OneShots } from "../grants/one-shot.js";
import type { Budgets } from "./budgets.js";

/**
 * What an allowed provider call holds until it has been sent: the single-use approval the
 * decision used and the budget it reserved. This is the one place that gives them back; the
 * pipeline settles its holds exactly once, however the call ended (an early exit, an upstream
 * failure, or an unexpected error).
 */

/** How a call ended, as far as what it holds is concerned. */
export type CallEnd =
  /** Nothing reached the provider (or nothing came back): everything is given back, `why` audited. */
  | { sent: false; why: string }
  /** The provider answered: the approval is used up; the money moved unless it refused (`status` ≥ 400). */
  | { sent: true; status: number }
  /** It went out and may have been acted on, with no answer: the approval is used up and the money counted as moved. */
  | { sent: "unknown"; why: string };

/** The end assumed when the pipeline stopped on an unexpected error. */
export const NOT_SENT_UNEXPECTEDLY = {
  sent: false,
  why: "the call was not sent: the gateway failed before sending it",
} as const satisfies CallEnd;

export interface HoldsDeps {
  budgets: Pick<Budgets, "release">;
  oneShots: Pick<OneShots, "release">;
}

/** The holds of one call: `reserved` records a budget reservation, `settle` gives back what the end calls for. */
export interface Holds {
  reserved(id: number | undefined): void;
  settle(end: CallEnd): Promise<void>;
}

/**
 * Holds for a call the decision allowed. `oneShotId` is the single-use grant the decision used,
 * if any; `bound` the exact call it was bound to (named in the `grant.released` line).
 */
export function holdsFor(
  deps: HoldsDeps,
  identity: AgentIdentity,
  bound: BoundCall,
  oneShotId: string | undefined,
): Holds {
  let reservation: number | undefined;
  let settled = false;
  return {
    reserved(id) {
      reservation = id;
    },
    async settle(end) {
      if (settled) return;
      settled = true;
      // Each hold is given back on its own: one that fails never keeps the other; the first
      // failure is thrown once both were tried.
      const failures: unknown[] = [];
      const attempt = (release: () => Promise<void>) =>
        release().catch((e: unknown) => void failures.push(e));
      // The money did not move: the budget gets it back.
      const moved = end.sent === "unknown" || (end.sent && end.status < 400);
      if (reservation !== undefined && !moved) await attempt(() => deps.budgets.release(reservation!));
      // A one-shot approval that did not lead to a call is given back (see OneShots.release).
      if (!end.sent && oneShotId !== undefined)
        await attempt(() => deps.oneShots.release(identity, bound, oneShotId, end.why));
      if (failures.length > 0) throw failures[0];
    },
  };
}
