import type { Logger } from "../logger.js";
import { formatIssue, type PolicySetResult, parsePolicySet } from "../policy/index.js";
import { displayPath, readPolicyFiles } from "./policy-files.js";
import { type RefreshContext, refreshProject } from "./refresh.js";
import { newestPerProject } from "./revision-repo.js";
import { PolicyFileError, type RevisionWriter, retire, storeDocument } from "./revisions.js";

/** What one import of the policies directory did. */
export interface ImportReport {
  loaded: { project: string; revision: number; file: string }[];
  unchanged: { project: string; revision: number; file: string }[];
  failed: { file: string; project: string | null; issues: string[] }[];
  retired: { project: string; revision: number }[];
}

export interface ImportContext extends RevisionWriter, RefreshContext {
  log: Logger;
  /** Absolute path of the directory holding `*.yaml` policy files. */
  policiesDir: string;
  /** The import running now, and whether another was asked for meanwhile. */
  importing: { running: Promise<ImportReport> | undefined; rerun: boolean };
}

const AUDIT_ISSUES_MAX = 50;

type PolicySetFailure = PolicySetResult["failures"][number];

/** Audits and reports a file that was refused; the revision in force keeps serving. */
async function reportFailure(c: ImportContext, report: ImportReport, f: PolicySetFailure, actor: string) {
  const issues = f.issues.map(formatIssue);
  report.failed.push({ file: f.file, project: f.project ?? null, issues });
  c.log.warn(
    { file: f.file, project: f.project, issues },
    "policy file rejected; the previous revision keeps serving",
  );
  await c.db.transaction((tx) =>
    c.audit.appendInTx(tx, [
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

/**
 * Retires every project whose file is gone: no file, valid or not, claims it, and its newest
 * revision came from a file (not from a failed one).
 */
async function retireOrphans(
  c: ImportContext,
  report: ImportReport,
  claimed: { projects: Set<string>; sources: Set<string> },
  actor: string,
) {
  for (const row of await newestPerProject(c.db)) {
    if (row.retired || claimed.projects.has(row.project) || claimed.sources.has(row.source)) continue;
    if (!row.source.startsWith("file:")) continue;
    const next = await retire(c, row.project, displayPath(row.source.slice(5)), actor);
    if (next !== undefined) {
      report.retired.push({ project: row.project, revision: next });
      c.log.warn({ project: row.project, revision: next }, "policy retired: its file is gone");
      await refreshProject(c, row.project);
    }
  }
}

/** Reads the policies directory once: stores what changed, reports what failed, retires what is gone. */
async function importOnce(c: ImportContext, actor: string): Promise<ImportReport> {
  const report: ImportReport = { loaded: [], unchanged: [], failed: [], retired: [] };
  const sources = await readPolicyFiles(c.policiesDir);
  const set = parsePolicySet(sources);
  const byFile = new Map(sources.map((s) => [s.file, s]));
  for (const { file, document } of set.documents) {
    const src = byFile.get(file)!;
    let r: { changed: boolean; revision: number };
    try {
      r = await storeDocument(c, { file, path: src.path, text: src.text, doc: document, actor });
    } catch (e) {
      if (!(e instanceof PolicyFileError)) throw e;
      set.failures.push({ file: e.file, project: e.project, issues: e.issues });
      continue;
    }
    const entry = { project: document.project, revision: r.revision, file };
    (r.changed ? report.loaded : report.unchanged).push(entry);
    if (r.changed) c.log.info(entry, "policy loaded");
    await refreshProject(c, document.project);
  }
  for (const f of set.failures) await reportFailure(c, report, f, actor);
  await retireOrphans(
    c,
    report,
    {
      projects: new Set([
        ...set.documents.map((d) => d.document.project),
        ...set.failures.map((f) => f.project).filter((p): p is string => !!p),
      ]),
      sources: new Set(set.failures.map((f) => `file:${byFile.get(f.file)?.path ?? f.file}`)),
    },
    actor,
  );
  return report;
}

/**
 * Imports the policies directory. Calls made while an import runs are folded into one more
 * import after it, so the newest files always win: they get the report of that last pass. (The
 * loop checks `rerun` and clears `running` with no await between, so a call that finds `running`
 * set is always seen by the loop.)
 */
export async function importDirectory(c: ImportContext, actor: string): Promise<ImportReport> {
  const state = c.importing;
  if (state.running) {
    state.rerun = true;
    return state.running;
  }
  state.running = (async () => {
    try {
      let report = await importOnce(c, actor);
      while (state.rerun) {
        state.rerun = false;
        report = await importOnce(c, actor);
      }
      return report;
    } finally {
      state.running = undefined;
    }
  })();
  return state.running;
}
