import type { ReminderSchedule } from "./types.js";

/** What a pending request is due at `nowMs`: a reminder (its number), its escalation, or both. */
export interface ReminderStep {
  /** The reminder to send now (1 for the first); undefined when none is due. */
  reminder: number | undefined;
  escalate: boolean;
}

/**
 * The reminders of a request filed at `filedMs` fall at `after`, then every `every` (once without
 * it); missed ones are not sent one by one: the step says the latest that is due. Escalation falls
 * once, `escalate.after` after filing.
 */
export function reminderStep(
  schedule: ReminderSchedule,
  filedMs: number,
  sent: number,
  escalated: boolean,
  nowMs: number,
): ReminderStep {
  const since = nowMs - filedMs - schedule.afterSeconds * 1000;
  let due = 0;
  if (since >= 0)
    due = schedule.everySeconds === undefined ? 1 : 1 + Math.floor(since / (schedule.everySeconds * 1000));
  const e = schedule.escalate;
  return {
    reminder: due > sent ? due : undefined,
    escalate: !escalated && e !== undefined && nowMs >= filedMs + e.afterSeconds * 1000,
  };
}
