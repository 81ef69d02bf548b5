import { AppError } from "../errors.js";
import { compileProject, evaluateIn, parsePolicyFile } from "../policy/index.js";
import { projectName } from "../policy/schema.js";
import type { PolicyStore } from "../policy-store/policy-store.js";
import {
  type AdminDeps,
  type AdminOps,
  check,
  type EffectivePolicy,
  revisionNumber,
} from "./admin-service.js";
import { simulatePolicyFile } from "./policy-simulation.js";

/** The policy of `project` in force at `at`, from the stored revisions and grants. */
async function policyAt(
  policies: Pick<PolicyStore, "at">,
  project: string,
  at: Date,
): Promise<EffectivePolicy> {
  const p = await policies.at(project, at);
  if (!p)
    throw new AppError(
      "NOT_FOUND",
      `project '${project}' had no policy at ${at.toISOString()} (none was stored by then)`,
    );
  if (p.head.retired)
    throw new AppError(
      "NOT_FOUND",
      `project '${project}' had no policy at ${at.toISOString()}: it was retired at revision ${p.head.revision}`,
    );
  return {
    project,
    revision: p.head.revision,
    source: p.head.source,
    contentHash: p.head.contentHash,
    createdAt: p.head.createdAt,
    yaml: p.yaml,
    at: at.toISOString(),
    grantsInForce: p.grants.map((g) => ({
      id: g.id,
      agent: g.agent,
      action: g.action,
      resource: g.resource,
      resourcePattern: g.resourceGlob,
      expiresAt: g.expiresAt.toISOString(),
    })),
  };
}

/** The policy operations: the policy in force (now or then), its revisions, a call decided then, a simulation. */
export function policyOps(
  deps: AdminDeps,
): Pick<AdminOps, "showPolicy" | "policyHistory" | "policyRevision" | "checkPolicy" | "simulatePolicy"> {
  const { db, policies } = deps;
  return {
    async showPolicy(project, at) {
      check(projectName, project, "project");
      if (at !== undefined) return policyAt(policies, project, at);
      const r = await policies.latest(project);
      if (!r || r.retired) {
        throw new AppError(
          "NOT_FOUND",
          r
            ? `project '${project}' was retired at revision ${r.revision}: it has no policy`
            : `no policy for project '${project}'`,
        );
      }
      return {
        project,
        revision: r.revision,
        source: r.source,
        contentHash: r.contentHash,
        createdAt: r.createdAt,
        yaml: r.yaml,
      };
    },
    async policyHistory(project) {
      check(projectName, project, "project");
      const revisions = await policies.history(project);
      if (revisions.length === 0) throw new AppError("NOT_FOUND", `no policy for project '${project}'`);
      return revisions.map(({ baseline: _b, ...rest }) => rest);
    },
    async policyRevision(project, revision) {
      check(projectName, project, "project");
      check(revisionNumber, revision, "revision");
      const r = await policies.revision(project, revision);
      if (!r) throw new AppError("NOT_FOUND", `project '${project}' has no revision ${revision}`);
      return r;
    },
    async checkPolicy(project, call, at) {
      check(projectName, project, "project");
      const when = at ?? deps.clock.now();
      const p = await policyAt(policies, project, when);
      const parsed = parsePolicyFile({ file: `revision ${p.revision}`, text: p.yaml });
      if (!parsed.ok)
        throw new AppError(
          "INTERNAL",
          `revision ${p.revision} of ${project} does not load: ${parsed.error[0]?.message}`,
        );
      const compiled = compileProject({ document: parsed.value, revision: p.revision });
      const d = evaluateIn(compiled, { ...call, project, resource: call.resource ?? "" }, when.getTime());
      return { ...d, revision_at: p.revision, at: when.toISOString() };
    },
    simulatePolicy(project, input) {
      check(projectName, project, "project");
      return simulatePolicyFile({ db, policies, clock: deps.clock }, project, input);
    },
  };
}
