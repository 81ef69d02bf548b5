import { eventIdsOf, simulateHistory } from "../audit/history.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { AppError } from "../errors.js";
import {
  type CompiledProject,
  compileProject,
  formatDuration,
  formatIssue,
  parseDuration,
  parsePolicyFile,
} from "../policy/index.js";
import type { ChangedGroup } from "../policy/simulate.js";
import type { PolicyStore } from "../policy-store/policy-store.js";
import { grantRowsInEffect } from "../policy-store/policy-store.js";
import { spliceGrants } from "../policy-store/revision-rules.js";

/** The longest history a simulation reads, and the calls each list of changes names. */
const MAX_SINCE_SECONDS = 366 * 86_400;
export const SIMULATION_LIST_MAX = 50;

/** One distinct call the change would have answered differently. */
export interface SimulatedCall {
  agent: string;
  action: string;
  resource: string;
  branch: string | null;
  /** How many audited calls it was, what was recorded (ALLOW, or the deny code), and the newest line. */
  count: number;
  was: string;
  event_id: string;
  at: string;
  /** Why the proposed policy answers as it does. */
  reason: string;
}

/** What a policy file would have changed over a project's audited calls. */
export interface PolicySimulation {
  project: string;
  /** The policy in force it is compared with (its revision), and the window read. */
  revision: number;
  since: string;
  until: string;
  calls: number;
  allowed_calls: number;
  denied_calls: number;
  /** Of allowed_calls: calls refused by parameter constraints or deny patterns when made. */
  refusals_lifted: number;
  undetermined: number;
  /** The distinct calls it would have allowed and denied (newest first, at most SIMULATION_LIST_MAX each). */
  allowed: SimulatedCall[];
  denied: SimulatedCall[];
  /** Grants in force that importing the file would revoke (they are left out of the proposal). */
  revoked_grants: { id: string; reason: string }[];
}

export interface SimulationDeps {
  db: Db;
  policies: Pick<PolicyStore, "latest">;
  clock: Clock;
}

/**
 * What `yaml` (a policy file for `project`) would have allowed or denied over the project's audited
 * calls since `since` (an ISO 8601 duration back from now) that the file in force did not; and
 * which of the Butler's grants in force importing it would revoke. Nothing is replayed upstream.
 */
export async function simulatePolicyFile(
  deps: SimulationDeps,
  project: string,
  input: { yaml: string; file?: string | undefined; since?: string | undefined },
): Promise<PolicySimulation> {
  const now = deps.clock.now();
  const span = parseDuration(input.since ?? "P30D");
  if (!span.ok) throw new AppError("INVALID_INPUT", `since: ${span.error}`);
  if (span.value > MAX_SINCE_SECONDS)
    throw new AppError(
      "INVALID_INPUT",
      `since: at most ${formatDuration(MAX_SINCE_SECONDS)} of history is read`,
    );
  const latest = await deps.policies.latest(project);
  if (!latest || latest.retired)
    throw new AppError("NOT_FOUND", `project '${project}' has no policy in force`);
  // File against file: the Butler's grants came and went over the window, and a call one of them
  // answered is left out (see simulate), so neither side carries them.
  const before = compiled(`revision ${latest.revision}`, latest.baseline || latest.yaml, latest.revision);
  const file = input.file ?? "the proposed file";
  const parsed = parsePolicyFile({ file, text: input.yaml });
  if (!parsed.ok)
    throw new AppError(
      "INVALID_INPUT",
      `yaml: the file is not a valid policy: ${parsed.error.slice(0, 5).map(formatIssue).join("; ")}`,
    );
  if (parsed.value.project !== project)
    throw new AppError(
      "INVALID_INPUT",
      `yaml: the file is the policy of project '${parsed.value.project}', not '${project}'`,
    );
  const after = compileProject({ document: parsed.value, revision: latest.revision + 1 });
  const rows = await grantRowsInEffect(deps.db, project, now);
  const { revoked } = spliceGrants(
    rows.filter((g) => g.expiresAt > now),
    parsed.value,
    after,
    file,
    now,
  );
  const since = new Date(now.getTime() - span.value * 1000);
  const sim = await simulateHistory(deps.db, before, after, { project, since, until: now });
  const shown = [...sim.allowed.slice(0, SIMULATION_LIST_MAX), ...sim.denied.slice(0, SIMULATION_LIST_MAX)];
  const ids = await eventIdsOf(
    deps.db,
    shown.map((g) => g.lastSeq),
  );
  const view = (g: ChangedGroup): SimulatedCall => ({
    agent: g.agent,
    action: g.action,
    resource: g.resource,
    branch: g.branch ?? null,
    count: g.count,
    was: g.decision === "ALLOW" ? "ALLOW" : (g.code ?? "DENY"),
    event_id: ids.get(g.lastSeq) ?? "",
    at: new Date(g.lastTs).toISOString(),
    reason: g.reason,
  });
  return {
    project,
    revision: latest.revision,
    since: since.toISOString(),
    until: now.toISOString(),
    calls: sim.calls,
    allowed_calls: sim.allowedCalls,
    denied_calls: sim.deniedCalls,
    refusals_lifted: sim.refusalsLifted,
    undetermined: sim.undetermined,
    allowed: sim.allowed.slice(0, SIMULATION_LIST_MAX).map(view),
    denied: sim.denied.slice(0, SIMULATION_LIST_MAX).map(view),
    revoked_grants: revoked.map((g) => ({ id: g.id, reason: g.reason })),
  };
}

function compiled(file: string, text: string, revision: number): CompiledProject {
  const r = parsePolicyFile({ file, text });
  if (!r.ok)
    throw new AppError(
      "INVALID_INPUT",
      `the effective policy of ${file} does not load: ${r.error.slice(0, 3).map(formatIssue).join("; ")}`,
    );
  return compileProject({ document: r.value, revision });
}
