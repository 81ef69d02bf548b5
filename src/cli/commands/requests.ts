import type { AccessRequestView } from "../../butler/butler-service.js";
import { args, type Command, optional, print, required } from "../command.js";
import type { CliIo } from "../output.js";
import { withAdmin } from "../with-admin.js";

function requestLine(r: AccessRequestView): string {
  const call = `${r.action} on ${r.resource || "(no resource)"}${r.branch ? ` branch ${r.branch}` : ""}`;
  return `${r.id}  ${r.status.padEnd(8)}  ${r.project}  ${r.agent}  ${call}  ${r.risk_tier} risk, ${r.approvals.length}/${r.approvals_required} approvals, ${r.requested_ttl}`;
}

async function requestsList(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, { status: { type: "string" }, project: { type: "string" } }, [0, 0]);
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

async function requestsShow(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
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

async function requestsReview(verdict: "approve" | "deny", argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(
    argv,
    { approver: { type: "string" }, ttl: { type: "string" }, reason: { type: "string" } },
    [1, 1],
  );
  const approver = required(values, "approver");
  const r = await withAdmin(io, (ops) =>
    ops.reviewRequest(positionals[0]!, approver, verdict, {
      ttl: optional(values, "ttl"),
      reason: optional(values, "reason"),
    }),
  );
  print(io, r, `${r.outcome}: ${requestLine(r.request)}`, !!values.json);
  return 0;
}

async function grantsList(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, { project: { type: "string" }, all: { type: "boolean" } }, [0, 0]);
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

async function grantsRevoke(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, { reason: { type: "string" } }, [1, 1]);
  const r = await withAdmin(io, (ops) => ops.revokeGrant(positionals[0]!, optional(values, "reason")));
  print(
    io,
    r,
    `Revoked ${r.grant_id}; ${positionals[0]} no longer allows anything (policy revision ${r.revision})`,
    !!values.json,
  );
  return 0;
}

export const requestCommands: Command[] = [
  {
    name: "requests list",
    usage: "[--status S] [--project P]",
    summary: "list access requests, newest first",
    admin: true,
    run: requestsList,
  },
  {
    name: "requests show",
    usage: "<id>",
    summary: "one request with its proposed policy diff",
    admin: true,
    run: requestsShow,
  },
  {
    name: "requests approve",
    usage: "<id> --approver A [--ttl T]",
    summary: "record an approver's approval (optionally for a shorter TTL)",
    admin: true,
    run: (argv, io) => requestsReview("approve", argv, io),
  },
  {
    name: "requests deny",
    usage: "<id> --approver A [--reason TEXT]",
    summary: "record an approver's denial",
    admin: true,
    run: (argv, io) => requestsReview("deny", argv, io),
  },
  {
    name: "grants list",
    usage: "[--project P] [--all]",
    summary: "grants in force (--all: also expired and revoked)",
    admin: true,
    run: grantsList,
  },
  {
    name: "grants revoke",
    usage: "<id> [--reason TEXT]",
    summary: "revoke a grant at once",
    admin: true,
    run: grantsRevoke,
  },
];
