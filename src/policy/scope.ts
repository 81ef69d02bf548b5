import { err, ok, type Result } from "../result.js";
import type { CompiledProject } from "./compile.js";
import { compileGlob } from "./glob.js";

/**
 * Denials that a new grant can lift, so an access request makes sense. Not a deny pattern (it wins
 * over any grant), not an unknown agent or project, and not a failed parameter constraint (a grant
 * for the call would allow every parameter value, which is more than what was denied).
 */
export const LIFTABLE_DENIALS: ReadonlySet<string> = new Set([
  "no_service_grant",
  "no_action_grant",
  "agent_not_covered",
  "resource_not_covered",
  "branch_not_covered",
  "grant_expired",
  "op_group_denied",
]);

/** Denials a person lifts for one call, once (require_approval). */
export const ONE_SHOT_DENIALS: ReadonlySet<string> = new Set(["approval_required", "one_shot_used"]);

/** The exact call a grant will cover (and, when asked for, the resource glob it names instead). */
export interface ScopedCall {
  action: string;
  resource: string;
  branch: string | undefined;
  /**
   * A glob the grant names instead of `resource`, which it matches: asked for explicitly
   * (`resource_pattern`), shown to approvers with its blast radius. Undefined: `resource` exactly.
   */
  resourceGlob?: string | undefined;
}

/** Escapes glob syntax so that a pattern matches exactly `text` and nothing else. */
export function escapeGlob(text: string): string {
  return text.replace(/[\\*?[\]{}]/g, (c) => `\\${c}`);
}

const WILDCARD = /[*?]/;

/**
 * Turns what an agent asked for into the least-privilege call a grant will cover.
 *
 * With a denial (`denied`, read from the audit log): the grant covers exactly the denied call.
 * What the agent wrote may only name that call, or patterns that match it: patterns are narrowed
 * to the denied call, never widened; anything that does not cover the denied call is refused.
 * Without a denial: the agent must name one exact call (no wildcards).
 */
export function scopeRequest(asked: Partial<ScopedCall>, denied: ScopedCall | undefined): Result<ScopedCall> {
  const exact = scopeExact(asked, denied);
  if (!exact.ok || asked.resourceGlob === undefined) return exact;
  const glob = checkResourceGlob(asked.resourceGlob, exact.value.resource);
  return glob.ok ? ok({ ...exact.value, resourceGlob: glob.value }) : glob;
}

/**
 * A resource glob an agent asked for: valid, without whitespace, starting with literal text (one
 * that starts with a wildcard covers anything), and matching the call's resource. A pattern
 * without wildcards is the resource itself: no glob.
 */
function checkResourceGlob(pattern: string, resource: string): Result<string | undefined> {
  const g = compileGlob(pattern);
  if (!g.ok) return err(`resource_pattern: ${g.error}`);
  if (g.value.literal !== undefined)
    return g.value.literal === resource
      ? ok(undefined)
      : err(`resource_pattern: ${JSON.stringify(pattern)} has no wildcard and is not the call's resource`);
  if (/\s/.test(pattern)) return err("resource_pattern: a grant cannot name a resource with whitespace");
  if (WILDCARD.test(pattern[0] ?? ""))
    return err(
      "resource_pattern: must start with literal text (for example github.com/acme/*), not a wildcard",
    );
  if (resource === "") return err("resource_pattern: the call names no resource for the pattern to cover");
  if (!g.value.match(resource))
    return err(
      `resource_pattern: ${JSON.stringify(pattern)} does not match the call's resource ${JSON.stringify(resource)}`,
    );
  return ok(pattern);
}

function scopeExact(asked: Partial<ScopedCall>, denied: ScopedCall | undefined): Result<ScopedCall> {
  if (denied) {
    const checks: [string, string | undefined, string | undefined][] = [
      ["action", asked.action, denied.action],
      ["resource", asked.resource, denied.resource],
      ["branch", asked.branch, denied.branch],
    ];
    for (const [field, want, was] of checks) {
      // Naming the denied value itself always fits, even when it contains glob characters.
      if (want === undefined || want === was || (want === "" && was === undefined)) continue;
      if (was === undefined) return err(`${field}: the denied call named no ${field}; leave it out`);
      const g = compileGlob(want);
      if (!g.ok || !g.value.match(was)) {
        return err(
          `${field}: the request asks for ${JSON.stringify(want)} but the denied call was on ${JSON.stringify(was)}`,
        );
      }
    }
    return ok({ ...denied });
  }
  if (asked.action === undefined) return err("action: is required (or give denial_event_id)");
  for (const [field, v] of [
    ["action", asked.action],
    ["resource", asked.resource],
    ["branch", asked.branch],
  ] as const) {
    if (v !== undefined && WILDCARD.test(v)) {
      return err(
        `${field}: name one exact ${field} without * or ?, or give denial_event_id for the call that was denied`,
      );
    }
  }
  return ok({ action: asked.action, resource: asked.resource ?? "", branch: asked.branch });
}

/** Whether some grant of `service` in the project limits branches (so calls must name one). */
export function usesBranches(project: CompiledProject, service: string): boolean {
  const svc = project.services.get(service);
  if (!svc) return false;
  for (const list of svc.exact.values()) if (list.some((g) => g.branches !== undefined)) return true;
  return svc.patterned.some((g) => g.branches !== undefined);
}

/**
 * The id of a grant with parameter constraints or deny patterns that covers this action and
 * resource (for any agent): a new unconstrained grant for the same call would bypass them.
 */
export function governingGrant(project: CompiledProject, call: ScopedCall): string | undefined {
  const colon = call.action.indexOf(":");
  const svc = project.services.get(call.action.slice(0, colon));
  if (!svc) return undefined;
  const verb = call.action.slice(colon + 1);
  const candidates = [
    ...(svc.exact.get(verb) ?? []),
    ...svc.patterned.filter((g) => g.actionPatterns.some((p) => p.match(verb))),
  ];
  for (const g of candidates) {
    // A glob grant is held back by any limited grant of the action, whatever its resources:
    // telling whether two globs overlap is not worth the risk of telling wrong.
    if (
      call.resourceGlob === undefined &&
      g.resources !== undefined &&
      !g.resources.some((r) => r.match(call.resource))
    )
      continue;
    if (g.constraints.length > 0 || g.denyText.length > 0 || g.denyResources.length > 0) return g.id;
  }
  return undefined;
}

/**
 * What stops a grant for exactly `call` from being written (or kept) whoever asks: its action is
 * never granted, or a grant with parameter constraints or deny patterns covers the call (an
 * unconstrained grant would bypass its limits). Undefined when nothing does.
 */
export function grantBlocked(
  project: CompiledProject,
  call: ScopedCall,
): { kind: "never_grant" } | { kind: "governed"; grant: string } | undefined {
  if (project.neverGrant.some((g) => g.match(call.action))) return { kind: "never_grant" };
  const grant = governingGrant(project, call);
  return grant === undefined ? undefined : { kind: "governed", grant };
}
