import { type FSWatcher, watch } from "node:fs";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db, Queryable, Tx } from "../db/client.js";
import type { Logger } from "../logger.js";
import type { PolicyIndex } from "../policy/index.js";
import { type ImportContext, type ImportReport, importDirectory } from "./import.js";
import { compiledIn, ensureCurrent, refreshAll, refreshProject } from "./refresh.js";
import {
  historyIn,
  latestHeadIn,
  latestIn,
  lockProject,
  type PolicyRevision,
  policyAtIn,
  type RevisionHead,
  revisionIn,
} from "./revision-repo.js";
import { type RecomposeResult, recompose } from "./revisions.js";
import { createServing } from "./serving.js";

export type { ImportReport } from "./import.js";
export {
  EXPIRED_GRANT_RETENTION_MS,
  grantRowsInEffect,
  type PolicyRevision,
  type RevisionHead,
} from "./revision-repo.js";
export { renderCached, toEntry } from "./revision-rules.js";
export type { RecomposeResult } from "./revisions.js";

export interface PolicyStoreDeps {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
  clock: Clock;
  log: Logger;
  /** Absolute path of the directory holding `*.yaml` policy files. */
  policiesDir: string;
}

/** Re-imports the directory shortly after its files change; returns how to stop, or undefined if it cannot watch. */
function watchDirectory(c: ImportContext): (() => void) | undefined {
  let debounce: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(c.policiesDir, { persistent: false }, () => {
      if (debounce) clearTimeout(debounce);
      debounce = setTimeout(() => {
        debounce = undefined;
        importDirectory(c, "watch").catch((e) =>
          c.log.error({ err: e }, "policy import after a file change failed"),
        );
      }, 250);
    });
    watcher.on("error", (e) => c.log.warn({ err: e }, "watching the policies directory failed"));
  } catch (e) {
    c.log.warn(
      { err: e, dir: c.policiesDir },
      "cannot watch the policies directory; use butler policy reload after edits",
    );
    return undefined;
  }
  return () => {
    watcher?.close();
    if (debounce) clearTimeout(debounce);
  };
}

/**
 * The policies in force. Files in the policies directory are the baseline: each valid file is
 * stored as a numbered revision of its project (only when its content changed). The decision
 * index is compiled from the newest revision of every project, on every instance, and recompiled
 * when any instance stores a new revision. A file that does not parse never replaces the
 * revision in force: the failure is logged and audited, and the previous version keeps serving.
 */
export function createPolicyStore(deps: PolicyStoreDeps) {
  const { db, log } = deps;
  const c: ImportContext = {
    ...deps,
    serving: createServing(log),
    importing: { running: undefined, rerun: false },
  };
  let unwatch: (() => void) | undefined;

  deps.changes.subscribe((change) => {
    if (change.kind === "policy")
      void refreshProject(c, change.project).catch((e) =>
        log.error({ err: e, project: change.project }, "policy refresh failed"),
      );
    if (change.kind === "resync")
      void refreshAll(c).catch((e) => log.error({ err: e }, "policy resync failed"));
  });

  return {
    compiledIn: (q: Queryable, project: string) => compiledIn(c, q, project),
    /** The index decisions are made from. Swapped atomically; never mutated. */
    index: (): PolicyIndex => c.serving.current,
    /** Loads every stored project (at start-up, before serving). */
    refreshAll: () => refreshAll(c),
    /**
     * Imports the policies directory. Calls made while an import runs are folded into one more
     * import after it, so the newest files always win.
     */
    importDirectory: (actor = "butler"): Promise<ImportReport> => importDirectory(c, actor),
    latest: (project: string): Promise<PolicyRevision | undefined> => latestIn(db, project),
    /** The newest stored revision of a project, read in `tx` (for proposals). */
    latestIn,
    /** The newest stored revision of a project without its effective text, read in `tx`. */
    latestHeadIn,
    refreshProject: (project: string) => refreshProject(c, project),
    revision: (project: string, n: number) => revisionIn(db, project, n),
    /** The policy in force at a past moment (revision, baseline and the grants in force then). */
    at: (project: string, at: Date) => policyAtIn(db, project, at),
    recompose: (tx: Tx, project: string, cause: string): Promise<RecomposeResult> =>
      recompose(c, tx, project, cause),
    ensureCurrent: (project: string) => ensureCurrent(c, project),
    lockProject,
    /** Every revision of a project, oldest first, without their effective texts. */
    history: (project: string): Promise<RevisionHead[]> => historyIn(db, project),

    /**
     * Re-reads the newest revisions every `intervalMs`, in case a change notification was lost
     * (a half-open LISTEN connection raises no error).
     */
    resyncEvery(intervalMs: number): () => void {
      const timer = setInterval(() => {
        refreshAll(c).catch((e) => log.warn({ err: e }, "periodic policy resync failed"));
      }, intervalMs);
      timer.unref();
      return () => clearInterval(timer);
    },

    /** Re-imports the directory shortly after its files change. */
    watch(): void {
      unwatch ??= watchDirectory(c);
    },

    stopWatching(): void {
      unwatch?.();
      unwatch = undefined;
    },
  };
}

export type PolicyStore = ReturnType<typeof createPolicyStore>;
