import type { AuditLine } from "./chain.js";

/** One event as a sentence. Agent-written values are made terminal-safe by the caller's formatter. */
export function story(l: AuditLine): string {
  const d = l as AuditLine & Record<string, unknown>;
  switch (l.type) {
    case "gateway.allowed":
      return `ALLOWED ${l.action} on ${l.resource || "(no resource)"}${d.branch ? ` branch ${d.branch}` : ""} by grant ${d.grant_id}${d.expires ? ` (expires ${d.expires})` : ""}`;
    case "gateway.denied":
      return `DENIED ${l.action} on ${l.resource || "(no resource)"}${d.branch ? ` branch ${d.branch}` : ""}: ${l.reason}`;
    case "agent_token.created":
      return `token ${d.token_id} created for ${l.agent} in ${l.project} by ${d.actor}`;
    case "agent_token.revoked":
      return `token${(d.token_ids as string[]).length > 1 ? "s" : ""} ${(d.token_ids as string[]).join(", ")} revoked by ${d.actor}`;
    case "access_request.filed":
      return `asked for ${l.action} on ${l.resource || "(no resource)"} for ${d.ttl} (request ${d.request_id}, ${d.risk_tier} risk): "${l.reason}"`;
    case "policy.proposed":
      return `Butler proposed grant ${d.request_id} on revision ${d.base_revision} (diff sha256 ${String(d.proposal_hash).slice(0, 12)})`;
    case "access_request.approval_recorded":
      return `${d.approver} approved request ${d.request_id} via ${d.channel} (${l.reason})`;
    case "access_request.approved":
      return `request ${d.request_id} approved by ${(d.approved_by as string[]).join(", ")} via ${d.channel} for ${d.ttl}`;
    case "access_request.denied":
      return `request ${d.request_id} denied by ${d.approver} via ${d.channel}: ${l.reason}`;
    case "grant.applied":
      return `grant ${d.grant_id} applied: policy revision ${d.revision}, expires ${d.expires}`;
    case "one_shot.proposed":
      return `Butler proposed a one-shot approval ${d.request_id}: exactly this call, once (params sha256 ${String(d.call_sha256).slice(0, 12)})`;
    case "grant.one_shot":
      return `single-use grant ${d.grant_id} ready, usable once until ${d.expires}`;
    case "grant.used":
      return `single-use grant ${d.grant_id} used for the approved call`;
    case "grant.revoked":
      return `grant ${d.grant_id} revoked by ${d.actor}: ${l.reason}`;
    case "grant.expired":
      return `grant ${d.grant_id} expired`;
    case "audit.checkpoint":
      return `checkpoint: the chain up to sequence ${d.head_seq} signed with key ${d.key_id}`;
    case "agent.notified":
      return `agent told: ${d.notification} (request ${d.request_id})`;
    default:
      return `${l.type}${l.reason ? `: ${l.reason}` : ""}`;
  }
}
