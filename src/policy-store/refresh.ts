import type { Clock } from "../clock.js";
import type { Db, Queryable } from "../db/client.js";
import type { CompiledProject } from "../policy/index.js";
import {
  grantRowsInEffect,
  latestHeadIn,
  newestPerProject,
  newestRevisionNumber,
  type RevisionHead,
  revisionHeadIn,
} from "./revision-repo.js";
import { apply, compiledOf, type Serving, serves } from "./serving.js";

/** Keeping what this instance serves up to date with the revisions every instance stores. */

export interface RefreshContext {
  db: Db;
  serving: Serving;
  clock: Clock;
}

/** Applies `r` with the project's grants in effect, read after it (so they hold at least its grants). */
async function applyHead(c: RefreshContext, r: RevisionHead): Promise<void> {
  if (serves(c.serving, r.project, r.revision)) return;
  const rows = r.retired ? [] : await grantRowsInEffect(c.db, r.project, c.clock.now());
  apply(c.serving, r, rows);
}

/** Brings every project up to its newest stored revision (at start-up, on resync, periodically). */
export async function refreshAll(c: RefreshContext): Promise<void> {
  for (const row of await newestPerProject(c.db)) {
    if (serves(c.serving, row.project, row.revision)) continue;
    const r = await revisionHeadIn(c.db, row.project, row.revision);
    if (r) await applyHead(c, r);
  }
}

export async function refreshProject(c: RefreshContext, project: string): Promise<void> {
  const r = await latestHeadIn(c.db, project);
  if (r) await applyHead(c, r);
}

/**
 * Makes sure this instance serves the newest revision of `project`; true if it had to catch up.
 * The gateway calls it before answering DENY, so that an agent told of its grant is never
 * denied by an instance that has not heard of the grant yet.
 */
export async function ensureCurrent(c: RefreshContext, project: string): Promise<boolean> {
  if (serves(c.serving, project, await newestRevisionNumber(c.db, project))) return false;
  await refreshProject(c, project);
  return true;
}

/**
 * The newest revision of `project` as read through `q` (a transaction holding the project's
 * lock sees exactly the revision that will be recomposed), compiled; undefined when the project
 * has no policy in force.
 */
export async function compiledIn(
  c: Pick<RefreshContext, "serving" | "clock">,
  q: Queryable,
  project: string,
): Promise<CompiledProject | undefined> {
  const r = await latestHeadIn(q, project);
  // Usually the revision this instance already serves: no need to compile it again.
  return r && compiledOf(c.serving, r, () => grantRowsInEffect(q, project, c.clock.now()));
}
