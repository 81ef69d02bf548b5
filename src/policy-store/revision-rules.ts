import { composeEffective, type GrantEntry, renderGrant } from "../policy/effective.js";
import {
  type CompiledProject,
  type PolicyDocument,
  type PolicyIssue,
  parsePolicyFile,
} from "../policy/index.js";
import { grantBlocked } from "../policy/scope.js";
import { err, ok, type Result } from "../result.js";
import type { GrantRow } from "./revision-repo.js";

/**
 * How a revision's effective policy is made (pure): the baseline file's text with the grants in
 * force spliced into it, and which grants a new baseline revokes.
 */

/** A stored grant as it is written into the effective policy. */
export function toEntry(g: GrantRow): GrantEntry {
  return {
    id: g.id,
    agent: g.agent,
    action: g.action,
    resource: g.resource,
    branch: g.branch ?? undefined,
    resourceGlob: g.resourceGlob ?? undefined,
    expiresAt: g.expiresAt.getTime(),
    note: `access request ${g.id} by ${g.agent}`,
    approvedBy: g.approvedBy,
  };
}

const rendered = new Map<string, string>();
const RENDERED_MAX = 50_000;

/**
 * `renderGrant`, remembered: a stored grant's lines never change (only its revocation, which is
 * not written), so an effective policy with many grants is put together without writing each
 * again. Bounded: the oldest entries go first.
 */
export function renderCached(g: GrantEntry, indent: string): string {
  const key = `${g.id}\n${g.expiresAt}\n${indent}\n${g.note}\n${g.approvedBy?.join(",") ?? ""}`;
  let text = rendered.get(key);
  if (text === undefined) {
    text = renderGrant(g, indent);
    if (rendered.size >= RENDERED_MAX) rendered.delete(rendered.keys().next().value!);
    rendered.set(key, text);
  }
  return text;
}

/** `baseline` with `grants` spliced in, or the first problem if that policy would not load. */
export function composeChecked(
  baseline: string,
  grants: readonly GrantRow[],
  file: string,
): Result<string, PolicyIssue> {
  const effective = composeEffective(baseline, grants.map(toEntry), renderCached);
  const check = parsePolicyFile({ file, text: effective });
  return check.ok ? ok(effective) : err(check.error[0]!);
}

/**
 * Why a grant in force must end when `doc` becomes the baseline, or undefined if it may stay:
 * its agent left the project, or the new file would refuse it if it were asked for now (its
 * action is never granted, or a grant with parameter constraints or deny patterns now covers the
 * call: an unconstrained grant would bypass the limit the owners just wrote).
 */
export function whyRevoked(
  g: GrantRow,
  doc: PolicyDocument,
  compiled: CompiledProject,
  file: string,
  now: Date,
): string | undefined {
  if (!doc.agents.some((a) => a.name === g.agent)) return `agent ${g.agent} is no longer listed in ${file}`;
  if (g.expiresAt <= now) return undefined;
  const blocked = grantBlocked(compiled, {
    action: g.action,
    resource: g.resource,
    branch: g.branch ?? undefined,
    resourceGlob: g.resourceGlob ?? undefined,
  });
  if (blocked?.kind === "never_grant")
    return `${g.action} is now never granted in ${doc.project} (settings.never_grant in ${file})`;
  return blocked?.kind === "governed"
    ? `grant ${blocked.grant} in ${file} now limits ${g.action} on ${g.resourceGlob ?? (g.resource || "(no resource)")} with parameter constraints or deny patterns, which this grant would bypass`
    : undefined;
}

/** A new baseline's grants: those it revokes (with why), and those its effective policy keeps. */
export function spliceGrants(
  rows: readonly GrantRow[],
  doc: PolicyDocument,
  compiled: CompiledProject,
  file: string,
  now: Date,
): { revoked: (GrantRow & { reason: string })[]; kept: GrantRow[] } {
  const revoked = rows.flatMap((g) => {
    const reason = whyRevoked(g, doc, compiled, file, now);
    return reason ? [{ ...g, reason }] : [];
  });
  const revokedIds = new Set(revoked.map((g) => g.id));
  // Grants whose id the file already uses (a copy of `policy show` saved as the file) are in it.
  const inFile = new Set(doc.grants.map((g) => g.id));
  return { revoked, kept: rows.filter((g) => !revokedIds.has(g.id) && !inFile.has(g.id)) };
}
