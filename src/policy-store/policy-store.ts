import { type FSWatcher, watch } from "node:fs";
import { and, asc, desc, eq, gt, inArray, isNull, sql } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import { type Db, type Queryable, rowsOf, type Tx } from "../db/client.js";
import { grants, policyRevisions } from "../db/schema.js";
import { AppError } from "../errors.js";
import { sha256 } from "../hash.js";
import type { Logger } from "../logger.js";
import { composeEffective, type GrantEntry } from "../policy/effective.js";
import {
  type CompiledProject,
  compileProject,
  formatIssue,
  type PolicyDocument,
  type PolicyIndex,
  type PolicyIssue,
  parsePolicyFile,
  parsePolicySet,
} from "../policy/index.js";
import { grantBlocked } from "../policy/scope.js";
import { displayPath, readPolicyFiles } from "./policy-files.js";

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

/** A revision stored by `recompose`: its number and the effective policy before and after. */
export interface RecomposeResult {
  revision: number;
  beforeHash: string;
  afterHash: string;
  before: string;
  after: string;
}

/** How long an expired grant stays in the effective policy, so that denials can say it expired. */
export const EXPIRED_GRANT_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** Grants of a project that are not revoked and expired less than the retention time ago. */
export async function grantRowsInEffect(q: Queryable, project: string, now: Date) {
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

/** A stored grant as it is written into the effective policy. */
export function toEntry(g: typeof grants.$inferSelect): GrantEntry {
  return {
    id: g.id,
    agent: g.agent,
    action: g.action,
    resource: g.resource,
    branch: g.branch ?? undefined,
    expiresAt: g.expiresAt.getTime(),
    note: `access request ${g.id} by ${g.agent}`,
    approvedBy: g.approvedBy,
  };
}

export { sha256 };

/** A valid file that still cannot be stored (its effective policy would not load). */
class PolicyFileError extends Error {
  constructor(
    readonly file: string,
    readonly project: string,
    readonly issues: PolicyIssue[],
  ) {
    super(`${file}: ${issues[0]?.message}`);
  }
}

/** What one import of the policies directory did. */
export interface ImportReport {
  loaded: { project: string; revision: number; file: string }[];
  unchanged: { project: string; revision: number; file: string }[];
  failed: { file: string; project: string | null; issues: string[] }[];
  retired: { project: string; revision: number }[];
}

export interface PolicyStoreDeps {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
  clock: Clock;
  log: Logger;
  /** Absolute path of the directory holding `*.yaml` policy files. */
  policiesDir: string;
}

const AUDIT_ISSUES_MAX = 50;

/**
 * The policies in force. Files in the policies directory are the baseline: each valid file is
 * stored as a numbered revision of its project (only when its content changed). The decision
 * index is compiled from the newest revision of every project, on every instance, and recompiled
 * when any instance stores a new revision. A file that does not parse never replaces the
 * revision in force: the failure is logged and audited, and the previous version keeps serving.
 */
export function createPolicyStore(deps: PolicyStoreDeps) {
  const { db, audit, changes, log, policiesDir } = deps;
  let projects = new Map<string, CompiledProject>();
  let current: PolicyIndex = { projects };
  const parsed = new Map<string, PolicyDocument>();
  let importing: Promise<ImportReport> | undefined;
  let rerun = false;
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;

  changes.subscribe((c) => {
    if (c.kind === "policy")
      void refreshProject(c.project).catch((e) =>
        log.error({ err: e, project: c.project }, "policy refresh failed"),
      );
    if (c.kind === "resync") void refreshAll().catch((e) => log.error({ err: e }, "policy resync failed"));
  });

  function toRevision(r: typeof policyRevisions.$inferSelect): PolicyRevision {
    return {
      project: r.project,
      revision: r.revision,
      contentHash: r.contentHash,
      source: r.source,
      cause: r.cause,
      yaml: r.yaml,
      baseline: r.baseline,
      effectiveHash: r.effectiveHash,
      retired: r.retired,
      createdAt: r.createdAt.toISOString(),
    };
  }

  /** Compiles a stored revision (parsing is cached per revision), or undefined if it serves nothing. */
  function compileRevision(r: PolicyRevision): CompiledProject | undefined {
    if (r.retired) return undefined;
    const key = `${r.project}@${r.revision}`;
    let doc = parsed.get(key);
    if (!doc) {
      const result = parsePolicyFile({ file: r.source, text: r.yaml });
      if (!result.ok) {
        // Stored revisions were valid when stored; if one no longer parses, fail closed for its project.
        log.error(
          { project: r.project, revision: r.revision, issues: result.error.map(formatIssue) },
          "stored policy revision no longer parses; project denies everything",
        );
        return undefined;
      }
      doc = result.value;
      // Only the revisions in force are looked up again; keep the cache from growing without end.
      if (parsed.size >= 10_000) parsed.clear();
      parsed.set(key, doc);
    }
    return compileProject({ document: doc, revision: r.revision });
  }

  // The newest revision applied per project (retired ones included). Refreshes can finish out of
  // order (a NOTIFY, a resync, our own import); only a newer revision ever replaces what serves.
  const applied = new Map<string, number>();

  /** Puts a revision in force unless a newer one already is. */
  function apply(r: PolicyRevision): void {
    if ((applied.get(r.project) ?? 0) >= r.revision) return;
    applied.set(r.project, r.revision);
    const compiled = compileRevision(r);
    const next = new Map(projects);
    if (compiled) next.set(r.project, compiled);
    else next.delete(r.project);
    projects = next;
    current = { projects };
  }

  /** Brings every project up to its newest stored revision (at start-up, on resync, periodically). */
  async function refreshAll(): Promise<void> {
    const rows = await db.execute(
      sql`SELECT DISTINCT ON (project) project, revision FROM policy_revisions ORDER BY project, revision DESC`,
    );
    for (const row of rowsOf<{ project: string; revision: number | string }>(rows)) {
      if ((applied.get(row.project) ?? 0) >= Number(row.revision)) continue;
      const r = await revision(row.project, Number(row.revision));
      if (r) apply(r);
    }
  }

  async function refreshProject(project: string): Promise<void> {
    const r = await latest(project);
    if (r) apply(r);
  }

  function latest(project: string): Promise<PolicyRevision | undefined> {
    return latestIn(db, project);
  }

  async function revision(project: string, n: number): Promise<PolicyRevision | undefined> {
    const [row] = await db
      .select()
      .from(policyRevisions)
      .where(and(eq(policyRevisions.project, project), eq(policyRevisions.revision, n)));
    return row && toRevision(row);
  }

  /** Stores a new revision of `doc` unless the newest one already has the same content and source. */
  async function storeDocument(file: string, path: string, text: string, doc: PolicyDocument, actor: string) {
    const contentHash = sha256(text);
    // The absolute path: instances (and CLI runs) started from other directories agree on it.
    const source = `file:${path}`;
    return db.transaction(async (tx) => {
      // Instances importing at the same time take turns per project, so revision numbers never clash.
      await lockProject(tx, doc.project);
      const prev = await latestIn(tx, doc.project);
      if (prev && !prev.retired && prev.contentHash === contentHash && prev.source === source) {
        return { changed: false, revision: prev.revision };
      }
      const next = (prev?.revision ?? 0) + 1;
      const now = deps.clock.now();
      // Grants in force stay in force across a new baseline, unless their agent left the project,
      // or the new file would refuse them if they were asked for now: their action is never
      // granted, or a grant with parameter constraints or deny patterns now covers the call (an
      // unconstrained grant would bypass the limit the owners just wrote).
      const agentNames = new Set(doc.agents.map((a) => a.name));
      const rows = await grantRowsInEffect(tx, doc.project, now);
      const compiled = compileProject({ document: doc, revision: next });
      const whyRevoked = (g: (typeof rows)[number]): string | undefined => {
        if (!agentNames.has(g.agent)) return `agent ${g.agent} is no longer listed in ${file}`;
        if (g.expiresAt <= now) return undefined;
        const blocked = grantBlocked(compiled, {
          action: g.action,
          resource: g.resource,
          branch: g.branch ?? undefined,
        });
        if (blocked?.kind === "never_grant")
          return `${g.action} is now never granted in ${doc.project} (settings.never_grant in ${file})`;
        return blocked?.kind === "governed"
          ? `grant ${blocked.grant} in ${file} now limits ${g.action} on ${g.resource || "(no resource)"} with parameter constraints or deny patterns, which this grant would bypass`
          : undefined;
      };
      const orphans = rows.flatMap((g) => {
        const reason = whyRevoked(g);
        return reason ? [{ ...g, reason }] : [];
      });
      if (orphans.length > 0) {
        await tx
          .update(grants)
          .set({ revokedAt: now, revokedBy: "policy" })
          .where(
            inArray(
              grants.id,
              orphans.map((g) => g.id),
            ),
          );
      }
      // Grants whose id the file already uses (a copy of `policy show` saved as the file) are in it.
      const inFile = new Set(doc.grants.map((g) => g.id));
      const revokedIds = new Set(orphans.map((g) => g.id));
      const effective = composeEffective(
        text,
        rows.filter((g) => !revokedIds.has(g.id) && !inFile.has(g.id)).map(toEntry),
      );
      const check = parsePolicyFile({ file, text: effective });
      if (!check.ok) {
        // Never store a revision that would not load: the file is refused, the old one keeps serving.
        throw new PolicyFileError(file, doc.project, [
          {
            ...check.error[0]!,
            message: `with the grants in force added, the policy would not load: ${check.error[0]!.message}; write grants as a block list`,
          },
        ]);
      }
      await tx.insert(policyRevisions).values({
        project: doc.project,
        revision: next,
        contentHash,
        source,
        yaml: effective,
        baseline: text,
        effectiveHash: sha256(effective),
        createdAt: now,
      });
      await audit.appendInTx(tx, [
        {
          type: "policy.loaded",
          project: doc.project,
          reason: prev ? `revision ${next} replaces revision ${prev.revision}` : "first revision",
          details: {
            revision: next,
            content_hash: contentHash,
            effective_hash: sha256(effective),
            file,
            actor,
            grants: doc.grants.length,
            agents: doc.agents.length,
          },
        },
      ]);
      if (orphans.length > 0) {
        await audit.appendInTx(
          tx,
          orphans.map((g) => ({
            type: "grant.revoked",
            agent: g.agent,
            project: g.project,
            action: g.action,
            resource: g.resource,
            reason: g.reason,
            details: { grant_id: g.id, revision: next, actor },
          })),
        );
      }
      await changes.publish(tx, { kind: "policy", project: doc.project });
      return { changed: true, revision: next };
    });
  }

  async function retire(project: string, file: string, actor: string): Promise<number | undefined> {
    return db.transaction(async (tx) => {
      await lockProject(tx, project);
      const prev = await latestIn(tx, project);
      if (!prev || prev.retired) return undefined;
      const next = prev.revision + 1;
      await tx.insert(policyRevisions).values({
        project,
        revision: next,
        contentHash: prev.contentHash,
        source: prev.source,
        yaml: prev.yaml,
        baseline: prev.baseline,
        effectiveHash: prev.effectiveHash,
        retired: true,
        createdAt: deps.clock.now(),
      });
      await audit.appendInTx(tx, [
        {
          type: "policy.retired",
          project,
          reason: `${file} no longer defines project ${project}; it has no policy and every call is denied`,
          details: { revision: next, file, actor },
        },
      ]);
      await changes.publish(tx, { kind: "policy", project });
      return next;
    });
  }

  /**
   * Stores a new revision of `project` whose effective policy is its current baseline plus the
   * grants in effect now (read inside `tx`, so a grant inserted in the same transaction is in it).
   * For approvals, revocations and expiries; the caller audits what happened.
   */
  async function recompose(tx: Tx, project: string, cause: string): Promise<RecomposeResult> {
    await lockProject(tx, project);
    const prev = await latestIn(tx, project);
    if (!prev || prev.retired)
      throw new AppError("PRECONDITION_FAILED", `project '${project}' has no policy in force`);
    const now = deps.clock.now();
    const effective = composeEffective(
      prev.baseline,
      (await grantRowsInEffect(tx, project, now)).map(toEntry),
    );
    // Never store a policy that would not load: fail the whole transaction instead.
    const check = parsePolicyFile({ file: `${project} (effective)`, text: effective });
    if (!check.ok)
      throw new AppError(
        "INTERNAL",
        `the effective policy of ${project} would not load: ${formatIssue(check.error[0]!)}`,
      );
    const revision = prev.revision + 1;
    const afterHash = sha256(effective);
    await tx.insert(policyRevisions).values({
      project,
      revision,
      contentHash: prev.contentHash,
      // Still built from the same file: the file stays the source, the grant change is the cause.
      source: prev.source,
      cause,
      yaml: effective,
      baseline: prev.baseline,
      effectiveHash: afterHash,
      createdAt: now,
    });
    await changes.publish(tx, { kind: "policy", project });
    return { revision, beforeHash: prev.effectiveHash, afterHash, before: prev.yaml, after: effective };
  }

  /** Takes the project's lock for the rest of `tx` (revisions and grant changes take turns). */
  async function lockProject(tx: Tx, project: string): Promise<void> {
    await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext('butler.policy'), hashtext(${project}))`);
  }

  /** The newest stored revision of a project, read in `tx` (for proposals). */
  async function latestIn(q: Queryable, project: string): Promise<PolicyRevision | undefined> {
    const [row] = await q
      .select()
      .from(policyRevisions)
      .where(eq(policyRevisions.project, project))
      .orderBy(desc(policyRevisions.revision))
      .limit(1);
    return row && toRevision(row);
  }

  /**
   * Makes sure this instance serves the newest revision of `project`; true if it had to catch up.
   * The gateway calls it before answering DENY, so that an agent told of its grant is never
   * denied by an instance that has not heard of the grant yet.
   */
  async function ensureCurrent(project: string): Promise<boolean> {
    const [row] = rowsOf<{ revision: number | string | null }>(
      await db.execute(
        sql`SELECT max(revision) AS revision FROM policy_revisions WHERE project = ${project}`,
      ),
    );
    const newest = Number(row?.revision ?? 0);
    if (newest <= (applied.get(project) ?? 0)) return false;
    await refreshProject(project);
    return true;
  }

  async function importOnce(actor: string): Promise<ImportReport> {
    const report: ImportReport = { loaded: [], unchanged: [], failed: [], retired: [] };
    const sources = await readPolicyFiles(policiesDir);
    const set = parsePolicySet(sources);
    const byFile = new Map(sources.map((s) => [s.file, s]));
    for (const { file, document } of set.documents) {
      const src = byFile.get(file)!;
      let r: { changed: boolean; revision: number };
      try {
        r = await storeDocument(file, src.path, src.text, document, actor);
      } catch (e) {
        if (!(e instanceof PolicyFileError)) throw e;
        set.failures.push({ file: e.file, project: e.project, issues: e.issues });
        continue;
      }
      (r.changed ? report.loaded : report.unchanged).push({
        project: document.project,
        revision: r.revision,
        file,
      });
      if (r.changed) log.info({ project: document.project, revision: r.revision, file }, "policy loaded");
      await refreshProject(document.project);
    }
    for (const f of set.failures) {
      const issues = f.issues.map(formatIssue);
      report.failed.push({ file: f.file, project: f.project ?? null, issues });
      log.warn(
        { file: f.file, project: f.project, issues },
        "policy file rejected; the previous revision keeps serving",
      );
      await db.transaction((tx) =>
        audit.appendInTx(tx, [
          {
            type: "policy.load_failed",
            project: f.project ?? null,
            reason: `${f.file} was rejected (${issues.length} problem${issues.length === 1 ? "" : "s"}); the previous revision keeps serving`,
            details: {
              file: f.file,
              issues: issues.slice(0, AUDIT_ISSUES_MAX),
              issue_count: issues.length,
              actor,
            },
          },
        ]),
      );
    }
    // A project whose file is gone (and that no other file, valid or not, claims) has no policy any more.
    const defined = new Set(set.documents.map((d) => d.document.project));
    const claimed = new Set(set.failures.map((f) => f.project).filter((p): p is string => !!p));
    const failedFiles = new Set(set.failures.map((f) => `file:${byFile.get(f.file)?.path ?? f.file}`));
    const rows = await db.execute(
      sql`SELECT DISTINCT ON (project) project, source, retired FROM policy_revisions ORDER BY project, revision DESC`,
    );
    for (const row of rowsOf<{ project: string; source: string; retired: boolean }>(rows)) {
      if (row.retired || defined.has(row.project) || claimed.has(row.project) || failedFiles.has(row.source))
        continue;
      if (!row.source.startsWith("file:")) continue;
      const next = await retire(row.project, displayPath(row.source.slice(5)), actor);
      if (next !== undefined) {
        report.retired.push({ project: row.project, revision: next });
        log.warn({ project: row.project, revision: next }, "policy retired: its file is gone");
        await refreshProject(row.project);
      }
    }
    return report;
  }

  /**
   * The newest revision of `project` as read through `q` (a transaction holding the project's
   * lock sees exactly the revision that will be recomposed), compiled; undefined when the project
   * has no policy in force.
   */
  async function compiledIn(q: Queryable, project: string): Promise<CompiledProject | undefined> {
    const r = await latestIn(q, project);
    if (!r) return undefined;
    // Usually the revision this instance already serves: no need to compile it again.
    const serving = current.projects.get(project);
    return serving?.revision === r.revision && !r.retired ? serving : compileRevision(r);
  }

  return {
    compiledIn,
    /** The index decisions are made from. Swapped atomically; never mutated. */
    index(): PolicyIndex {
      return current;
    },

    /** Loads every stored project (at start-up, before serving). */
    refreshAll,

    /**
     * Imports the policies directory. Calls made while an import runs are folded into one more
     * import after it, so the newest files always win.
     */
    async importDirectory(actor = "butler"): Promise<ImportReport> {
      if (importing) {
        rerun = true;
        await importing.catch(() => {});
        if (importing) return importing;
      }
      importing = (async () => {
        try {
          let report = await importOnce(actor);
          while (rerun) {
            rerun = false;
            report = await importOnce(actor);
          }
          return report;
        } finally {
          importing = undefined;
        }
      })();
      return importing;
    },

    latest,
    latestIn,
    refreshProject,
    revision,
    recompose,
    ensureCurrent,
    lockProject,

    async history(project: string): Promise<PolicyRevision[]> {
      const rows = await db
        .select()
        .from(policyRevisions)
        .where(eq(policyRevisions.project, project))
        .orderBy(asc(policyRevisions.revision));
      return rows.map(toRevision);
    },

    /**
     * Re-reads the newest revisions every `intervalMs`, in case a change notification was lost
     * (a half-open LISTEN connection raises no error).
     */
    resyncEvery(intervalMs: number): () => void {
      const timer = setInterval(() => {
        refreshAll().catch((e) => log.warn({ err: e }, "periodic policy resync failed"));
      }, intervalMs);
      timer.unref();
      return () => clearInterval(timer);
    },

    /** Re-imports the directory shortly after its files change. */
    watch(): void {
      if (watcher) return;
      try {
        watcher = watch(policiesDir, { persistent: false }, () => {
          if (debounce) clearTimeout(debounce);
          debounce = setTimeout(() => {
            debounce = undefined;
            this.importDirectory("watch").catch((e) =>
              log.error({ err: e }, "policy import after a file change failed"),
            );
          }, 250);
        });
        watcher.on("error", (e) => log.warn({ err: e }, "watching the policies directory failed"));
      } catch (e) {
        log.warn(
          { err: e, dir: policiesDir },
          "cannot watch the policies directory; use butler policy reload after edits",
        );
      }
    },

    stopWatching(): void {
      watcher?.close();
      watcher = undefined;
      if (debounce) clearTimeout(debounce);
    },
  };
}

export type PolicyStore = ReturnType<typeof createPolicyStore>;
