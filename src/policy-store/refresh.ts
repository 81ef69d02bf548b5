import type { Clock } from "../clock.js";
import type { Db, Queryable } from "../db/client.js";
import type { CompiledProject } from "../policy/index.js";
import {
  EXPIRED_GRANT_RETENTION_MS,
  grantRowsChangedSince,
  grantRowsInEffect,
  latestHeadIn,
  newestPerProject,
  newestRevisionNumber,
  type RevisionHead,
  revisionHeadIn,
} from "./revision-repo.js";
import { apply, applyChanges, baselineKey, compiledOf, type Serving, serves } from "./serving.js";

/** Keeping what this instance serves up to date with the revisions every instance stores. */

export interface RefreshContext {
  db: Db;
  serving: Serving;
  clock: Clock;
}

/**
 * Applies `r`: from the grants that changed since the revision this instance serves when that one
 * is of the same file (an approval reads one row, not every grant in force), otherwise from every
 * grant in effect. Either read comes after `r`'s, so it holds at least `r`'s grants.
 */
async function applyHead(c: RefreshContext, r: RevisionHead): Promise<void> {
  if (serves(c.serving, r.project, r.revision)) return;
  const now = c.clock.now();
  const parts = c.serving.parts.get(r.project);
  if (!r.retired && parts && parts.baselineKey === baselineKey(r)) {
    const since = parts.revision;
    const changed = await grantRowsChangedSince(c.db, r.project, since);
    if (applyChanges(c.serving, r, since, changed, now.getTime() - EXPIRED_GRANT_RETENTION_MS)) return;
  }
  const rows = r.retired ? [] : await grantRowsInEffect(c.db, r.project, now);
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
