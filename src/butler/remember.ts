import { constants } from "node:fs";
import { access, lstat, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createTwoFilesPatch } from "diff";
import { eq } from "drizzle-orm";
import type { Tx } from "../db/client.js";
import { accessRequests, grants } from "../db/schema.js";
import { AppError } from "../errors.js";
import { sha256 } from "../hash.js";
import { appendToFile, renderRule } from "../policy/effective.js";
import { compileProject, parsePolicyFile } from "../policy/index.js";
import { classifyRisk } from "../policy/risk.js";
import { approverOf } from "./approver-directory.js";
import type { ButlerDeps } from "./context.js";
import { lockRequest, ownLine, tokenRevokedAt } from "./request-repo.js";
import { checkGrantCall, matchesFiled } from "./request-rules.js";
import type { RequestRow } from "./request-view.js";
import { announce } from "./transitions.js";

/**
 * Approve and remember: approvers turn an approved grant into a permanent rule of the project's
 * policy file. It takes as many approvers as the request needed; the last one's press writes the
 * rule (the file's own bytes kept, one block added to `grants`) to the file, or, where the
 * policies directory is read-only or kept in git, to a patch in the data directory, and says where.
 */

export interface RememberResult {
  status: "recorded" | "remembered";
  request_id: string;
  remembered_by: string[];
  needed: number;
  /** Once remembered: `file` (written and loaded) or `patch` (to apply), its path, and the diff of the file. */
  written?: "file" | "patch";
  /** For `file`: true once loaded, else why it did not load. */
  loaded?: true | string;
  path?: string;
  diff?: string;
}

/** Where remembered rules go: the policies directory, and where patches are written instead. */
export interface RememberPaths {
  policiesDir: string;
  patchDir: string;
}

type Written = { written: "file" | "patch"; path: string; diff: string; before: string; after: string };

export async function remember(
  deps: ButlerDeps,
  paths: RememberPaths,
  approver: string,
  id: string,
): Promise<RememberResult> {
  await deps.policies.refreshAll();
  let written: Written | undefined;
  const result = await deps.db
    .transaction(async (tx): Promise<RememberResult> => {
      const r = await lockRequest(tx, id);
      const index = deps.policies.index();
      const project = index.projects.get(r.project);
      const who = project && approverOf(index, project, approver);
      if (!who || approver === r.agent)
        throw new AppError("NOT_FOUND", `no access request ${id} in your projects`);
      // The tier and the approvals it needs as the policy in force says now, not as filed.
      const tier = classifyRisk(r.action, project.document.settings);
      const needed = project.document.settings.approvals[tier];
      const qualifies = (a: string) => {
        const entry = approverOf(index, project, a);
        return a !== r.agent && entry !== undefined && entry.tiers.includes(tier);
      };
      if (!qualifies(approver))
        throw new AppError(
          "FORBIDDEN",
          `${approver} is not an approver of ${r.project} for ${tier}-risk requests, so cannot make this grant a rule`,
        );
      if (r.kind !== "grant" || r.status !== "approved")
        throw new AppError(
          "PRECONDITION_FAILED",
          `request ${id} is ${r.kind === "grant" ? r.status : "a one-shot approval"}: only an approved grant can be remembered`,
        );
      if (r.rememberedAt)
        throw new AppError("CONFLICT", `request ${id} was already remembered (${r.rememberedTo ?? "?"})`);
      if (r.breakGlassBy)
        throw new AppError(
          "PRECONDITION_FAILED",
          `${id} is a break-glass by ${r.breakGlassBy}: emergency access never becomes a permanent rule`,
        );
      await mayBecomeRule(tx, r);
      // Earlier askers count only while they still may decide such a request.
      const votes = [...new Set([...r.rememberedBy.filter(qualifies), approver])];
      const base = { request_id: id, remembered_by: votes, needed };
      if (votes.length < needed) {
        await tx.update(accessRequests).set({ rememberedBy: votes }).where(eq(accessRequests.id, id));
        await deps.audit.appendInTx(tx, [
          {
            type: "policy.remember_recorded",
            ...lineOf(r),
            reason: `${approver} asked to make grant ${id} a rule (${votes.length} of ${needed})`,
            details: { request_id: id, approver, remembered_by: votes, needed },
          },
        ]);
        await announce(
          deps,
          tx,
          r,
          undefined,
          `${approver} asked to make this grant a permanent rule (${votes.length} of ${needed})`,
          deps.clock.now(),
        );
        return { ...base, status: "recorded" };
      }
      await deps.policies.lockProject(tx, r.project);
      const w = await writeRule(deps, tx, paths, r, votes);
      written = w;
      await tx
        .update(accessRequests)
        .set({ rememberedBy: votes, rememberedAt: deps.clock.now(), rememberedTo: `${w.written}:${w.path}` })
        .where(eq(accessRequests.id, id));
      await deps.audit.appendInTx(tx, [
        {
          type: "policy.remembered",
          ...lineOf(r),
          reason:
            w.written === "file"
              ? `grant ${id} made a rule of ${w.path} by ${votes.join(", ")}`
              : `grant ${id} written as a rule to the patch ${w.path} by ${votes.join(", ")} (the policies directory is not written to)`,
          details: {
            request_id: id,
            remembered_by: votes,
            written: w.written,
            path: w.path,
            before_hash: sha256(w.before),
            after_hash: sha256(w.after),
            diff_sha256: sha256(w.diff),
          },
        },
      ]);
      const where = w.written === "file" ? `a permanent rule of ${w.path}` : `a patch to ${w.path}, to apply`;
      await announce(deps, tx, r, undefined, `Made ${where} by ${votes.join(", ")}`, deps.clock.now());
      return { ...base, status: "remembered", written: w.written, path: w.path, diff: w.diff };
    })
    .catch(async (e) => {
      // Not recorded after all: the file goes back to what it was (unless someone edited it since).
      if (written?.written === "file") await putBack(written);
      throw e;
    });
  deps.onEnqueued?.();
  // A rule written to the file is in force once the file is loaded, as any edit of it would be.
  if (result.written === "file") result.loaded = await load(deps, approver, result.path ?? "");
  return result;
}

/** Loads the policies directory after a rule was written; whether the file loaded, or why not. */
async function load(deps: ButlerDeps, approver: string, file: string): Promise<true | string> {
  try {
    const report = await deps.policies.importDirectory(`remember:${approver}`);
    const failed = report.failed.find((f) => file.endsWith(f.file) || f.file.endsWith(basename(file)));
    return failed ? `the file did not load: ${failed.issues.join("; ")}` : true;
  } catch (e) {
    // The error (a database's names its statement and parameters) goes to the log, not to the presser.
    deps.log.error({ err: e, file }, "loading the policies after a remembered rule failed");
    return "the rule is written but loading the policies failed (see the server log); run butler policy reload";
  }
}

/** Writes the file's text from before the rule back, if the file still holds the rule's text. */
async function putBack(w: Written): Promise<void> {
  const now = await readFile(w.path, "utf8").catch(() => undefined);
  if (now === w.after) await replaceFile(w.path, w.before);
}

/** Replaces a file's content at once (a new file renamed over it), keeping its mode. */
async function replaceFile(file: string, text: string): Promise<void> {
  const mode = (await stat(file)).mode & 0o777;
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    await writeFile(tmp, text, { flag: "wx", mode });
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

function lineOf(r: RequestRow) {
  return { agent: r.agent, project: r.project, action: r.action, resource: r.resource };
}

/**
 * Refuses a grant that may not become a rule whoever asks: its row differs from what the audit
 * log says was filed, its grant was revoked, or the token that filed it was revoked.
 */
async function mayBecomeRule(tx: Tx, r: RequestRow): Promise<void> {
  const filed = await ownLine(tx, r.filedEventId, r, "access_request.filed");
  if (!filed || !matchesFiled(r, filed))
    throw new AppError(
      "PRECONDITION_FAILED",
      `request ${r.id} differs from what was filed: it cannot become a rule`,
    );
  const [g] = await tx.select().from(grants).where(eq(grants.id, r.id));
  if (!g) throw new AppError("PRECONDITION_FAILED", `request ${r.id} has no grant to make a rule of`);
  if (g.revokedAt)
    throw new AppError(
      "PRECONDITION_FAILED",
      `the grant of ${r.id} was revoked${g.revokedBy ? ` by ${g.revokedBy}` : ""}: a revoked grant cannot become a rule`,
    );
  const tokenRevoked = await tokenRevokedAt(tx, r.tokenId);
  if (tokenRevoked)
    throw new AppError(
      "PRECONDITION_FAILED",
      `the agent token that filed ${r.id} was revoked at ${tokenRevoked.toISOString()}: it cannot become a rule`,
    );
}

/** The rule's file text, checked, and where it went. Throws a clear error when it cannot be written. */
async function writeRule(
  deps: ButlerDeps,
  tx: Tx,
  paths: RememberPaths,
  r: RequestRow,
  votes: string[],
): Promise<Written> {
  const latest = await deps.policies.latestHeadIn(tx, r.project);
  if (!latest || latest.retired || !latest.source.startsWith("file:"))
    throw new AppError(
      "PRECONDITION_FAILED",
      `project '${r.project}' has no policy file in force to remember into`,
    );
  const file = latest.source.slice("file:".length);
  let before: string;
  try {
    before = await readFile(file, "utf8");
  } catch (e) {
    throw new AppError(
      "PRECONDITION_FAILED",
      `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? "error"}): the policy file in force is not there`,
    );
  }
  if (sha256(before) !== latest.contentHash)
    throw new AppError(
      "CONFLICT",
      `${file} changed on disk since revision ${latest.revision} was loaded: run butler policy reload, then remember again`,
    );
  const parsed = parsePolicyFile({ file, text: before });
  if (!parsed.ok) throw new AppError("PRECONDITION_FAILED", `${file} does not load as it is on disk`);
  // The rule must hold by the file alone: the grant itself may still be in force.
  const fileOnly = compileProject({ document: parsed.value, revision: latest.revision });
  const call = {
    action: r.action,
    resource: r.resource,
    branch: r.branch ?? undefined,
    resourceGlob: r.resourceGlob ?? undefined,
  };
  const checked = checkGrantCall(fileOnly, r.agent, call, deps.clock.now());
  if (!checked.ok) throw new AppError(checked.code, `this grant cannot become a rule: ${checked.message}`);
  if (checked.decision.decision === "ALLOW")
    throw new AppError(
      "CONFLICT",
      `${file} already allows this call (${checked.decision.reason}): nothing to remember`,
    );
  const day = deps.clock.now().toISOString().slice(0, 10);
  const after = appendToFile(before, (indent) =>
    renderRule(
      {
        id: `remembered-${r.id}`,
        agent: r.agent,
        action: r.action,
        resource: r.resource,
        branch: r.branch ?? undefined,
        resourceGlob: r.resourceGlob ?? undefined,
        note: `remembered from access request ${r.id} on ${day} by ${votes.join(", ")}`,
        approvedBy: votes,
      },
      indent,
    ),
  );
  if (after === undefined)
    throw new AppError(
      "PRECONDITION_FAILED",
      `${file} cannot take the rule without rewriting other lines (its grants are a flow list such as grants: [...], an empty list's key line has a comment, or its lines end in CRLF): write grants as a block list with LF line ends to remember into it`,
    );
  const check = parsePolicyFile({ file, text: after });
  if (!check.ok || check.value.project !== r.project)
    throw new AppError(
      "PRECONDITION_FAILED",
      `the rule would not load in ${file}: ${check.ok ? "" : check.error[0]?.message}`,
    );
  const diff = createTwoFilesPatch(`a/${basename(file)}`, `b/${basename(file)}`, before, after);
  if (await writable(file)) {
    // Last look before replacing it: an edit made since the check above is not written over.
    if (sha256(await readFile(file, "utf8")) !== latest.contentHash)
      throw new AppError(
        "CONFLICT",
        `${file} changed on disk just now: run butler policy reload, then remember again`,
      );
    try {
      await replaceFile(file, after);
      return { written: "file", path: file, diff, before, after };
    } catch (e) {
      if (!["EACCES", "EROFS", "EPERM"].includes((e as NodeJS.ErrnoException).code ?? "")) throw e;
    }
  }
  await mkdir(paths.patchDir, { recursive: true });
  const patch = join(paths.patchDir, `${r.project}-${r.id}.patch`);
  await writeFile(patch, diff);
  return { written: "patch", path: patch, diff, before, after };
}

/**
 * Whether the file may be written in place: a regular file (a link is not replaced by a copy) in
 * a writable directory that is not kept in git.
 */
async function writable(file: string): Promise<boolean> {
  if (!(await lstat(file)).isFile()) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (await exists(join(dir, ".git"))) return false;
    if (dirname(dir) === dir) break;
  }
  try {
    await access(dirname(file), constants.W_OK);
    await access(file, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
