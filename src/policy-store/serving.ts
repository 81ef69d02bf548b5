import type { Logger } from "../logger.js";
import {
  type CompiledProject,
  compileProject,
  formatIssue,
  type PolicyDocument,
  type PolicyIndex,
  parsePolicyFile,
} from "../policy/index.js";
import type { PolicyRevision } from "./revision-repo.js";

/**
 * What this instance serves: the compiled newest revision of every project. The index is swapped
 * whole, never mutated, so a decision in flight keeps the index it started with.
 */
export interface Serving {
  current: PolicyIndex;
  /**
   * The newest revision applied per project (retired ones included). Refreshes can finish out of
   * order (a NOTIFY, a resync, our own import); only a newer revision ever replaces what serves.
   */
  readonly applied: Map<string, number>;
  /**
   * The newest parsed document per project. Only the revision in force is looked up again (and the
   * next one, between its commit and its NOTIFY), so one per project is all that is kept: with one
   * kept per revision, every approval's revision (the file plus every grant in force) stayed in
   * memory, and a soak with steady approvals grew by hundreds of megabytes.
   */
  readonly parsed: Map<string, { revision: number; doc: PolicyDocument }>;
  readonly log: Logger;
}

export function createServing(log: Logger): Serving {
  return { current: { projects: new Map() }, applied: new Map(), parsed: new Map(), log };
}

/** Compiles a stored revision (parsing is cached per revision), or undefined if it serves nothing. */
function compileRevision(s: Serving, r: PolicyRevision): CompiledProject | undefined {
  if (r.retired) return undefined;
  const cached = s.parsed.get(r.project);
  let doc = cached?.revision === r.revision ? cached.doc : undefined;
  if (!doc) {
    const result = parsePolicyFile({ file: r.source, text: r.yaml });
    if (!result.ok) {
      // Stored revisions were valid when stored; if one no longer parses, fail closed for its project.
      s.log.error(
        { project: r.project, revision: r.revision, issues: result.error.map(formatIssue) },
        "stored policy revision no longer parses; project denies everything",
      );
      return undefined;
    }
    doc = result.value;
    if (!cached || cached.revision < r.revision) s.parsed.set(r.project, { revision: r.revision, doc });
  }
  return compileProject({ document: doc, revision: r.revision });
}

/** Whether this instance already serves revision `n` of `project`, or a newer one. */
export const serves = (s: Serving, project: string, n: number): boolean => (s.applied.get(project) ?? 0) >= n;

/** Puts a revision in force unless a newer one already is. */
export function apply(s: Serving, r: PolicyRevision): void {
  if (serves(s, r.project, r.revision)) return;
  s.applied.set(r.project, r.revision);
  if (r.retired) s.parsed.delete(r.project);
  const compiled = compileRevision(s, r);
  const next = new Map(s.current.projects);
  if (compiled) next.set(r.project, compiled);
  else next.delete(r.project);
  s.current = { projects: next };
}

/** `r` compiled, reusing what this instance serves when it is that very revision. */
export function compiledOf(s: Serving, r: PolicyRevision): CompiledProject | undefined {
  const serving = s.current.projects.get(r.project);
  return serving?.revision === r.revision && !r.retired ? serving : compileRevision(s, r);
}
