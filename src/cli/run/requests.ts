import type { AccessRequestView } from "../../butler/butler-service.js";
import { formatDuration } from "../../policy/time.js";
import { optional, type Parsed, print, required } from "../command.js";
import { type CliIo, termSafeLines } from "../output.js";
import { withAdmin } from "../with-admin.js";

function requestLine(r: AccessRequestView): string {
  const call = `${r.action} on ${r.resource || "(no resource)"}${r.branch ? ` branch ${r.branch}` : ""}`;
  return `${r.id}  ${r.status.padEnd(8)}  ${r.project}  ${r.agent}  ${call}  ${r.risk_tier} risk, ${r.approvals.length}/${r.approvals_required} approvals, ${ttlOf(r)}`;
}

/**
 * The TTL a request was granted (an approver may shorten it: `--ttl PT10M`), from its grant's
 * expiry and the decision's time, once approved; the TTL it asked for until then.
 */
function ttlOf(r: AccessRequestView): string {
  if (r.status !== "approved" || !r.grant || !r.decision) return r.requested_ttl;
  const seconds = Math.round((Date.parse(r.grant.expires_at) - Date.parse(r.decision.at)) / 1000);
  return `granted for ${formatDuration(seconds)}, until ${r.grant.expires_at}`;
}

export async function requestsList({ values }: Parsed, io: CliIo): Promise<number> {
  const list = await withAdmin(io, (ops) =>
    ops.listRequests({
      status: optional(values, "status"),
      project: optional(values, "project"),
    }),
  );
  print(
    io,
    { access_requests: list },
    list.length ? list.map(requestLine).join("\n") : "no access requests",
    !!values.json,
  );
  return 0;
}

export async function requestsShow({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const r = await withAdmin(io, (ops) => ops.showRequest(positionals[0]!));
  const text = [
    requestLine(r),
    // On one line and quoted: the agent's words must not pass for lines of this output.
    `reason (written by the agent): ${JSON.stringify(r.reason)}`,
    r.decision
      ? `decided ${r.decision.at} by ${r.decision.by} via ${r.decision.via}${r.decision.reason ? `: ${r.decision.reason}` : ""}`
      : `pending until ${r.expires_at}`,
    ...(r.grant
      ? [
          `grant ${r.grant.id} expires ${r.grant.expires_at}${r.grant.revoked_at ? `, revoked ${r.grant.revoked_at}` : ""}`,
        ]
      : []),
    "",
    r.proposal.diff,
  ].join("\n");
  print(io, r, text, !!values.json);
  return 0;
}

export async function requestsReview(
  verdict: "approve" | "deny",
  { values, positionals }: Parsed,
  io: CliIo,
): Promise<number> {
  const approver = required(values, "approver");
  const r = await withAdmin(io, (ops) =>
    ops.reviewRequest(positionals[0]!, approver, verdict, {
      ttl: optional(values, "ttl"),
      reason: optional(values, "reason"),
    }),
  );
  // The chat card the decision renders is the channels' business, not the CLI's output.
  print(
    io,
    { outcome: r.outcome, request: r.request },
    `${r.outcome}: ${requestLine(r.request)}`,
    !!values.json,
  );
  return 0;
}

export async function requestsRemember({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const approver = required(values, "approver");
  const r = await withAdmin(io, (ops) => ops.rememberRequest(positionals[0]!, approver));
  const text =
    r.status === "recorded"
      ? `recorded: ${r.remembered_by.length} of ${r.needed} approvers asked to make ${r.request_id} a rule`
      : `${r.written === "file" ? "written to" : "written as a patch to"} ${r.path}${r.written === "patch" ? " (apply it to the policies directory)" : r.loaded === true ? " and loaded" : `; ${r.loaded}`}\n${r.diff ?? ""}`;
  print(io, r, termSafeLines(text), !!values.json);
  return 0;
}

export async function breakGlassOpen({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const person = required(values, "person");
  const r = await withAdmin(io, (ops) =>
    ops.breakGlass(person, {
      project: positionals[0]!,
      agent: required(values, "agent"),
      action: required(values, "action"),
      resource: optional(values, "resource"),
      branch: optional(values, "branch"),
      ttl: optional(values, "ttl"),
      reason: required(values, "reason"),
    }),
  );
  print(
    io,
    r,
    `break-glass ${r.request_id} open until ${r.expires_at} (revision ${r.revision}); a second person reviews it with the alert's Acknowledge or POST /v1/break-glass/${r.request_id}/review`,
    !!values.json,
  );
  return 0;
}

export async function grantsList({ values }: Parsed, io: CliIo): Promise<number> {
  const list = await withAdmin(io, (ops) =>
    ops.listGrants({
      project: optional(values, "project"),
      all: !!values.all,
    }),
  );
  const text = list.length
    ? list
        .map(
          (g) =>
            `${g.id}  ${g.state.padEnd(7)}  ${g.project}  ${g.agent}  ${g.action} on ${g.resource || "(no resource)"}  expires ${g.expires_at}${g.state === "active" ? ` (${g.seconds_left}s left)` : ""}  approved by ${g.approved_by.join(", ")}`,
        )
        .join("\n")
    : "no grants";
  print(io, { grants: list }, text, !!values.json);
  return 0;
}

export async function grantsRevoke({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const r = await withAdmin(io, (ops) => ops.revokeGrant(positionals[0]!, optional(values, "reason")));
  print(
    io,
    r,
    `Revoked ${r.grant_id}; ${positionals[0]} no longer allows anything (policy revision ${r.revision})`,
    !!values.json,
  );
  return 0;
}
