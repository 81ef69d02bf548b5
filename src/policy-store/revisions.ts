import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db, Tx } from "../db/client.js";
import { AppError } from "../errors.js";
import { sha256 } from "../hash.js";
import { composeEffective } from "../policy/effective.js";
import { compileProject, type PolicyDocument, type PolicyIssue } from "../policy/index.js";
import {
  grantRowsInEffect,
  insertRevision,
  latestHeadIn,
  lockProject,
  type RevisionHead,
  revokeByPolicy,
  stampGrants,
} from "./revision-repo.js";
import { composeChecked, renderCached, spliceGrants, toEntry } from "./revision-rules.js";

/**
 * The three ways a revision is stored, each one transaction that takes the project's lock, writes
 * the revision with its audit lines, and announces it to every instance.
 */

export interface RevisionWriter {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish">;
  clock: Clock;
}

/** A revision stored by `recompose`: its number and the effective policy's hash before and after. */
export interface RecomposeResult {
  revision: number;
  beforeHash: string;
  afterHash: string;
}

/** A valid file that still cannot be stored (its effective policy would not load). */
export class PolicyFileError extends Error {
  constructor(
    readonly file: string,
    readonly project: string,
    readonly issues: PolicyIssue[],
  ) {
    super(`${file}: ${issues[0]?.message}`);
  }
}

/** A policy file to store: its name as shown, its absolute path, its text and what it parsed to. */
export interface PolicyFileInput {
  file: string;
  path: string;
  text: string;
  doc: PolicyDocument;
  actor: string;
}

/** The newest revision of `project`, read under its lock. */
async function lockedLatest(tx: Tx, project: string): Promise<RevisionHead | undefined> {
  // Instances importing at the same time take turns per project, so revision numbers never clash.
  await lockProject(tx, project);
  return latestHeadIn(tx, project);
}

/**
 * Stores a new revision of a file's document unless the newest one already has the same content
 * and source. Grants in force stay in force across a new baseline unless it refuses them (see
 * `whyRevoked`); those are revoked in the same transaction.
 */
export async function storeDocument(w: RevisionWriter, f: PolicyFileInput) {
  const { file, doc, actor } = f;
  const contentHash = sha256(f.text);
  // The absolute path: instances (and CLI runs) started from other directories agree on it.
  const source = `file:${f.path}`;
  return w.db.transaction(async (tx) => {
    const prev = await lockedLatest(tx, doc.project);
    if (prev && !prev.retired && prev.contentHash === contentHash && prev.source === source) {
      return { changed: false, revision: prev.revision };
    }
    const next = (prev?.revision ?? 0) + 1;
    const now = w.clock.now();
    const rows = await grantRowsInEffect(tx, doc.project, now);
    const compiled = compileProject({ document: doc, revision: next });
    const { revoked, kept } = spliceGrants(rows, doc, compiled, file, now);
    await revokeByPolicy(
      tx,
      revoked.map((g) => g.id),
      now,
    );
    await stampGrants(tx, doc.project, next);
    const effective = composeChecked(f.text, kept, file);
    if (!effective.ok) {
      // Never store a revision that would not load: the file is refused, the old one keeps serving.
      throw new PolicyFileError(file, doc.project, [
        {
          ...effective.error,
          message: `with the grants in force added, the policy would not load: ${effective.error.message}; write grants as a block list`,
        },
      ]);
    }
    const effectiveHash = sha256(effective.value);
    await insertRevision(tx, {
      project: doc.project,
      revision: next,
      contentHash,
      source,
      yaml: effective.value,
      baseline: f.text,
      effectiveHash,
      createdAt: now,
    });
    await w.audit.appendInTx(tx, [
      {
        type: "policy.loaded",
        project: doc.project,
        reason: prev ? `revision ${next} replaces revision ${prev.revision}` : "first revision",
        details: {
          revision: next,
          content_hash: contentHash,
          effective_hash: effectiveHash,
          file,
          actor,
          grants: doc.grants.length,
          agents: doc.agents.length,
        },
      },
      ...revoked.map((g) => ({
        type: "grant.revoked",
        agent: g.agent,
        project: g.project,
        action: g.action,
        resource: g.resource,
        reason: g.reason,
        details: { grant_id: g.id, revision: next, actor },
      })),
    ]);
    await w.changes.publish(tx, { kind: "policy", project: doc.project });
    return { changed: true, revision: next };
  });
}

/** Stores a revision that retires `project` (its file is gone); undefined if it already was. */
export async function retire(w: RevisionWriter, project: string, file: string, actor: string) {
  return w.db.transaction(async (tx) => {
    const prev = await lockedLatest(tx, project);
    if (!prev || prev.retired) return undefined;
    const next = prev.revision + 1;
    await insertRevision(tx, {
      project,
      revision: next,
      contentHash: prev.contentHash,
      source: prev.source,
      // Put together when read, like a grant change's revision.
      yaml: null,
      baseline: prev.baseline,
      effectiveHash: prev.effectiveHash,
      retired: true,
      createdAt: w.clock.now(),
    });
    await w.audit.appendInTx(tx, [
      {
        type: "policy.retired",
        project,
        reason: `${file} no longer defines project ${project}; it has no policy and every call is denied`,
        details: { revision: next, file, actor },
      },
    ]);
    await w.changes.publish(tx, { kind: "policy", project });
    return next;
  });
}

/**
 * Stores a new revision of `project` whose effective policy is its current baseline plus the
 * grants in effect now (read inside `tx`, so a grant inserted in the same transaction is in it).
 * For approvals, revocations and expiries; the caller audits what happened.
 */
export async function recompose(
  w: Pick<RevisionWriter, "changes" | "clock">,
  tx: Tx,
  project: string,
  cause: string,
): Promise<RecomposeResult> {
  const prev = await lockedLatest(tx, project);
  if (!prev || prev.retired)
    throw new AppError("PRECONDITION_FAILED", `project '${project}' has no policy in force`);
  const now = w.clock.now();
  // Instances serve the file's document plus each grant compiled from its row, so nothing here
  // parses the effective text (each grant was checked to load as policy when it was proposed; a
  // new file is checked whole when stored).
  const revision = prev.revision + 1;
  await stampGrants(tx, project, revision);
  // Only its hash is stored: the text is put together from the grants when someone reads it.
  const effective = composeEffective(
    prev.baseline,
    (await grantRowsInEffect(tx, project, now)).map(toEntry),
    renderCached,
  );
  const afterHash = sha256(effective);
  await insertRevision(tx, {
    project,
    revision,
    contentHash: prev.contentHash,
    // Still built from the same file: the file stays the source, the grant change is the cause.
    source: prev.source,
    cause,
    yaml: null,
    baseline: prev.baseline,
    effectiveHash: afterHash,
    createdAt: now,
  });
  await w.changes.publish(tx, { kind: "policy", project });
  return { revision, beforeHash: prev.effectiveHash, afterHash };
}
