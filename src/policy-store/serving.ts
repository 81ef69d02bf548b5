import type { Logger } from "../logger.js";
import { grantDefOf } from "../policy/effective.js";
import {
  type CompiledGrant,
  type CompiledProject,
  compileGrant,
  compileProject,
  formatIssue,
  type PolicyDocument,
  type PolicyIndex,
  parsePolicyFile,
} from "../policy/index.js";
import type { GrantRow, RevisionHead } from "./revision-repo.js";
import { toEntry } from "./revision-rules.js";

/**
 * What this instance serves: for every project, its newest revision compiled from two parts, the
 * policy file's document (parsed once per file version) and the grants of approved requests in
 * force (each compiled once, from its row). A new revision for one more grant, a revocation or an
 * expiry therefore costs that grant's compilation and an index rebuild of a few map inserts per
 * grant; nothing re-reads or re-parses the effective policy text, however many grants it holds.
 *
 * The index is swapped whole, never mutated, so a decision in flight keeps the index it started with.
 */
export interface Serving {
  current: PolicyIndex;
  /**
   * The newest revision applied per project (retired ones included). Refreshes can finish out of
   * order (a NOTIFY, a resync, our own import); only a newer revision ever replaces what serves.
   */
  readonly applied: Map<string, number>;
  /** Per project: its file's parsed document, and its request grants compiled, by id. */
  readonly parts: Map<string, ProjectParts>;
  readonly log: Logger;
}

export interface ProjectParts {
  /** The revision these parts serve. */
  revision: number;
  /** Which file version `doc` is: the file's content hash and source. */
  baselineKey: string;
  doc: PolicyDocument;
  /** Compiled request grants, by id; an entry also remembers the expiry it was compiled with. */
  grants: Map<string, CompiledGrant>;
}

export function createServing(log: Logger): Serving {
  return { current: { projects: new Map() }, applied: new Map(), parts: new Map(), log };
}

/** Which file version a revision was built from. */
export const baselineKey = (r: RevisionHead): string => `${r.contentHash}\n${r.source}`;

/** The parsed file of revision `r` (kept per project while the file does not change). */
function documentOf(
  s: Serving,
  r: RevisionHead,
  parts: ProjectParts | undefined,
): PolicyDocument | undefined {
  if (parts?.baselineKey === baselineKey(r)) return parts.doc;
  const result = parsePolicyFile({ file: r.source, text: r.baseline });
  if (!result.ok) {
    // Stored revisions were valid when stored; if one no longer parses, fail closed for its project.
    s.log.error(
      { project: r.project, revision: r.revision, issues: result.error.map(formatIssue) },
      "stored policy revision no longer parses; project denies everything",
    );
    return undefined;
  }
  return result.value;
}

/**
 * Revision `r` compiled from its file and `rows` (the project's grants in effect, read after `r`
 * was), reusing what this instance compiled before; `keep` stores the parts for the next revision.
 */
function compileParts(
  s: Serving,
  r: RevisionHead,
  rows: readonly GrantRow[],
  keep: boolean,
): CompiledProject | undefined {
  if (r.retired) return undefined;
  const before = s.parts.get(r.project);
  const doc = documentOf(s, r, before);
  if (!doc) return undefined;
  const sameFile = before?.doc === doc;
  // Grants whose id the file already uses (a copy of `policy show` saved as the file) are in it.
  const inFile = new Set(doc.grants.map((g) => g.id));
  const grants = new Map<string, CompiledGrant>();
  for (const row of rows) {
    if (inFile.has(row.id)) continue;
    const known = sameFile ? before.grants.get(row.id) : undefined;
    grants.set(
      row.id,
      known && known.expiresAt === row.expiresAt.getTime()
        ? known
        : compileGrant(grantDefOf(toEntry(row)), r.project),
    );
  }
  if (keep) s.parts.set(r.project, { revision: r.revision, baselineKey: baselineKey(r), doc, grants });
  return compileProject({ document: doc, revision: r.revision, compiledGrants: [...grants.values()] });
}

/** Replaces what serves `project` (undefined: nothing, every call denied). */
function put(s: Serving, project: string, compiled: CompiledProject | undefined): void {
  const next = new Map(s.current.projects);
  if (compiled) next.set(project, compiled);
  else next.delete(project);
  s.current = { projects: next };
}

/** Whether this instance already serves revision `n` of `project`, or a newer one. */
export const serves = (s: Serving, project: string, n: number): boolean => (s.applied.get(project) ?? 0) >= n;

/**
 * Puts revision `r` in force unless a newer one already is. `rows` are the project's grants in
 * effect, read after `r` (so they hold at least the grants `r` holds).
 */
export function apply(s: Serving, r: RevisionHead, rows: readonly GrantRow[]): void {
  if (serves(s, r.project, r.revision)) return;
  s.applied.set(r.project, r.revision);
  if (r.retired) s.parts.delete(r.project);
  put(s, r.project, compileParts(s, r, rows, true));
}

/**
 * Puts revision `r` in force from what this instance serves now plus `changed`: the project's
 * grants that revisions after `since` added or removed (read after `r`). Grants are only ever
 * added once and removed once, so changes since an older revision than the one served now apply
 * as well. False when what serves now is not built from `r`'s file or is older than `since`: the
 * caller then reads every grant in effect (`apply`).
 */
export function applyChanges(
  s: Serving,
  r: RevisionHead,
  since: number,
  changed: readonly GrantRow[],
  retainFrom: number,
): boolean {
  if (serves(s, r.project, r.revision)) return true;
  const before = s.parts.get(r.project);
  if (!before || r.retired || before.baselineKey !== baselineKey(r) || before.revision < since) return false;
  const inFile = new Set(before.doc.grants.map((g) => g.id));
  const grants = new Map(before.grants);
  for (const row of changed) {
    if (row.revokedAt !== null || row.removedRevision !== null) grants.delete(row.id);
    else if (!inFile.has(row.id) && grants.get(row.id)?.expiresAt !== row.expiresAt.getTime())
      grants.set(row.id, compileGrant(grantDefOf(toEntry(row)), r.project));
  }
  // Expired grants leave once their retention is over, as a full read would leave them out.
  for (const [id, g] of grants) if (g.expiresAt !== undefined && g.expiresAt <= retainFrom) grants.delete(id);
  s.applied.set(r.project, r.revision);
  s.parts.set(r.project, { ...before, revision: r.revision, grants });
  put(
    s,
    r.project,
    compileProject({ document: before.doc, revision: r.revision, compiledGrants: [...grants.values()] }),
  );
  return true;
}

/**
 * `r` compiled with `rows` (read in the same transaction), reusing what this instance serves when
 * it is that very revision.
 */
export function compiledOf(s: Serving, r: RevisionHead, rows: () => Promise<readonly GrantRow[]>) {
  const serving = s.current.projects.get(r.project);
  if (serving?.revision === r.revision && !r.retired) return Promise.resolve(serving);
  return rows().then((list) => compileParts(s, r, list, false));
}
