import { and, asc, desc, eq, gt, inArray, isNull, lte, or, sql } from "drizzle-orm";
import { type Queryable, rowsOf, type Tx } from "../db/client.js";
import { grants, policyRevisions } from "../db/schema.js";
import { composeEffective } from "../policy/effective.js";
import { renderCached, toEntry } from "./revision-rules.js";

/**
 * The stored revisions of every project's policy, and the grants they are composed with. Every
 * query takes the connection or transaction it runs in.
 */

/** One stored version of a project's baseline policy. */
export interface PolicyRevision {
  project: string;
  revision: number;
  /** sha256 of the baseline file's text. */
  contentHash: string;
  source: string;
  /** Why the revision exists when the file did not change (`grant:req_…`, `revoke:…`, `expiry:…`). */
  cause: string | null;
  /** The effective policy: the baseline plus the grants in force when this revision was stored. */
  yaml: string;
  /** The policy file's text. */
  baseline: string;
  effectiveHash: string;
  retired: boolean;
  createdAt: string;
}

/** A revision without its effective text, which only history and diffs read. */
export type RevisionHead = Omit<PolicyRevision, "yaml">;

export type GrantRow = typeof grants.$inferSelect;
export type NewRevision = typeof policyRevisions.$inferInsert;

/** How long an expired grant stays in the effective policy, so that denials can say it expired. */
export const EXPIRED_GRANT_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** `head` with its effective text: as stored, or put together from its grants when not stored. */
async function withText(q: Queryable, head: RevisionHead): Promise<PolicyRevision> {
  const [row] = await q
    .select({ yaml: policyRevisions.yaml })
    .from(policyRevisions)
    .where(and(eq(policyRevisions.project, head.project), eq(policyRevisions.revision, head.revision)));
  return { ...head, yaml: row?.yaml ?? (await effectiveText(q, head)) };
}

/**
 * The effective text of a revision stored without one: its baseline plus the grants it held,
 * those added at or before it and not removed by then, in the order they were granted, expired
 * ones included for the retention time (as when it was stored).
 */
async function effectiveText(q: Queryable, r: RevisionHead): Promise<string> {
  const at = Date.parse(r.createdAt);
  const held = await q
    .select()
    .from(grants)
    .where(
      and(
        eq(grants.project, r.project),
        lte(grants.addedRevision, r.revision),
        or(isNull(grants.removedRevision), gt(grants.removedRevision, r.revision)),
        gt(grants.expiresAt, new Date(at - EXPIRED_GRANT_RETENTION_MS)),
      ),
    )
    .orderBy(asc(grants.createdAt), asc(grants.id));
  return composeEffective(r.baseline, held.map(toEntry), renderCached);
}

/**
 * Stamps the grants a new revision `n` of `project` adds (inserted in this transaction) and
 * removes (revoked in it), so that the revision's text can be put together later. Touches only
 * those grants (a partial index holds exactly them).
 */
export async function stampGrants(tx: Tx, project: string, n: number): Promise<void> {
  await tx.execute(sql`
    UPDATE grants
    SET added_revision = coalesce(added_revision, ${n}),
        removed_revision = CASE WHEN revoked_at IS NOT NULL THEN coalesce(removed_revision, ${n}) END
    WHERE project = ${project}
      AND (added_revision IS NULL OR (revoked_at IS NOT NULL AND removed_revision IS NULL))`);
}

/** Every column but the effective text (which grows with the grants in force). */
const headColumns = {
  project: policyRevisions.project,
  revision: policyRevisions.revision,
  contentHash: policyRevisions.contentHash,
  source: policyRevisions.source,
  cause: policyRevisions.cause,
  baseline: policyRevisions.baseline,
  effectiveHash: policyRevisions.effectiveHash,
  retired: policyRevisions.retired,
  createdAt: policyRevisions.createdAt,
};

function toHead(
  r: { [K in keyof typeof headColumns]: (typeof policyRevisions.$inferSelect)[K] },
): RevisionHead {
  return { ...r, createdAt: r.createdAt.toISOString() };
}

/** The newest revision of a project without its effective text, read through `q`. */
export async function latestHeadIn(q: Queryable, project: string): Promise<RevisionHead | undefined> {
  const [row] = await q
    .select(headColumns)
    .from(policyRevisions)
    .where(eq(policyRevisions.project, project))
    .orderBy(desc(policyRevisions.revision))
    .limit(1);
  return row && toHead(row);
}

/** Revision `n` of a project without its effective text. */
export async function revisionHeadIn(
  q: Queryable,
  project: string,
  n: number,
): Promise<RevisionHead | undefined> {
  const [row] = await q
    .select(headColumns)
    .from(policyRevisions)
    .where(and(eq(policyRevisions.project, project), eq(policyRevisions.revision, n)));
  return row && toHead(row);
}

/** Takes the project's lock for the rest of `tx` (revisions and grant changes take turns). */
export async function lockProject(tx: Tx, project: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('butler.policy'), hashtext(${project}))`);
}

/** The newest stored revision of a project with its effective text, read through `q`. */
export async function latestIn(q: Queryable, project: string): Promise<PolicyRevision | undefined> {
  const head = await latestHeadIn(q, project);
  return head && withText(q, head);
}

/** Revision `n` of a project with its effective text. */
export async function revisionIn(
  q: Queryable,
  project: string,
  n: number,
): Promise<PolicyRevision | undefined> {
  const head = await revisionHeadIn(q, project, n);
  return head && withText(q, head);
}

/** The policy of a project in force at a past moment: the revision stored then, with the grants in force then. */
export interface PolicyAt {
  head: RevisionHead;
  /** The baseline with the Butler's grants in force at `at` (approved by then, not revoked, not expired). */
  yaml: string;
  grants: GrantRow[];
}

/**
 * The policy in force at `at`: the newest revision stored at or before it, its baseline, and the
 * grants that revision held that had not expired by `at`. Undefined when nothing was stored yet.
 */
export async function policyAtIn(q: Queryable, project: string, at: Date): Promise<PolicyAt | undefined> {
  const [row] = await q
    .select(headColumns)
    .from(policyRevisions)
    .where(and(eq(policyRevisions.project, project), lte(policyRevisions.createdAt, at)))
    .orderBy(desc(policyRevisions.revision))
    .limit(1);
  if (!row) return undefined;
  const head = toHead(row);
  if (head.retired) return { head, yaml: "", grants: [] };
  const held = await q
    .select()
    .from(grants)
    .where(
      and(
        eq(grants.project, project),
        lte(grants.addedRevision, head.revision),
        or(
          isNull(grants.removedRevision),
          gt(grants.removedRevision, head.revision),
          eq(grants.removedRevision, 0),
        ),
        gt(grants.expiresAt, at),
        // Grants older than revision tracking (added or removed at 0) are placed by their own times.
        lte(grants.createdAt, at),
        or(isNull(grants.revokedAt), gt(grants.revokedAt, at)),
      ),
    )
    .orderBy(asc(grants.createdAt), asc(grants.id));
  // Revisions stored before baselines were kept have only their effective text.
  const baseline = head.baseline || ((await withText(q, head)).yaml ?? "");
  return { head, yaml: composeEffective(baseline, held.map(toEntry), renderCached), grants: held };
}

/** Every revision of a project, oldest first, without their effective texts. */
export async function historyIn(q: Queryable, project: string): Promise<RevisionHead[]> {
  const rows = await q
    .select(headColumns)
    .from(policyRevisions)
    .where(eq(policyRevisions.project, project))
    .orderBy(asc(policyRevisions.revision));
  return rows.map(toHead);
}

/** The newest revision of every project: its number, source and whether it retired the project. */
export async function newestPerProject(
  q: Queryable,
): Promise<{ project: string; revision: number; source: string; retired: boolean }[]> {
  const rows = await q.execute(
    sql`SELECT DISTINCT ON (project) project, revision, source, retired FROM policy_revisions ORDER BY project, revision DESC`,
  );
  return rowsOf<{ project: string; revision: number | string; source: string; retired: boolean }>(rows).map(
    (r) => ({ ...r, revision: Number(r.revision) }),
  );
}

/** The newest revision number of a project; 0 when it has none. */
export async function newestRevisionNumber(q: Queryable, project: string): Promise<number> {
  const [row] = rowsOf<{ revision: number | string | null }>(
    await q.execute(sql`SELECT max(revision) AS revision FROM policy_revisions WHERE project = ${project}`),
  );
  return Number(row?.revision ?? 0);
}

export async function insertRevision(tx: Tx, values: NewRevision): Promise<void> {
  await tx.insert(policyRevisions).values(values);
}

/** Grants of a project that are not revoked and expired less than the retention time ago. */
export async function grantRowsInEffect(q: Queryable, project: string, now: Date): Promise<GrantRow[]> {
  return q
    .select()
    .from(grants)
    .where(
      and(
        eq(grants.project, project),
        isNull(grants.revokedAt),
        gt(grants.expiresAt, new Date(now.getTime() - EXPIRED_GRANT_RETENTION_MS)),
      ),
    )
    .orderBy(asc(grants.createdAt), asc(grants.id));
}

/**
 * The grants of a project that revisions after `since` added or removed: what an instance serving
 * revision `since` (of the same file) needs to serve a newer one, without reading the others.
 */
export async function grantRowsChangedSince(
  q: Queryable,
  project: string,
  since: number,
): Promise<GrantRow[]> {
  return q
    .select()
    .from(grants)
    .where(
      and(
        eq(grants.project, project),
        or(gt(grants.addedRevision, since), gt(grants.removedRevision, since)),
      ),
    )
    .orderBy(asc(grants.createdAt), asc(grants.id));
}

/** Revokes grants that a new baseline no longer allows. */
export async function revokeByPolicy(tx: Tx, ids: readonly string[], now: Date): Promise<void> {
  if (ids.length === 0) return;
  await tx
    .update(grants)
    .set({ revokedAt: now, revokedBy: "policy" })
    .where(inArray(grants.id, [...ids]));
}
