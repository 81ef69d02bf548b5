import type { ApprovalCard } from "../butler/approval-card.js";
import { formatDuration } from "../policy/time.js";

/** Shared wording of the card, for every platform's formatter. */

/** Cuts text to `max` characters (never inside a surrogate pair) and says so. */
export function truncate(text: string, max: number, marker = "…"): { text: string; cut: boolean } {
  if (text.length <= max) return { text, cut: false };
  let end = Math.max(0, max - marker.length);
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return { text: text.slice(0, end) + marker, cut: true };
}

export function approvalsLine(card: ApprovalCard): string {
  return `${card.approvedBy.length} of ${card.approvalsRequired} approval${card.approvalsRequired === 1 ? "" : "s"}`;
}

export function ttlLine(card: ApprovalCard): string {
  return `${formatDuration(card.requestedTtlSeconds)} (max ${formatDuration(card.maxTtlSeconds)})`;
}

/** The blast radius as one text block: a heading and one line per fact (empty when there is none). */
export function blastRadiusText(card: ApprovalCard): string {
  if (card.blastRadius.length === 0) return "";
  return `If approved, the grant allows:\n${card.blastRadius.map((f) => `• ${f}`).join("\n")}`;
}

/** While pending: until when the request waits for a decision. */
export function deadlineLine(card: ApprovalCard): string | undefined {
  if (card.status !== "pending") return undefined;
  return `Decide by ${card.requestExpiresAt.replace(/\.\d{3}Z$/, "Z")}; the request expires then`;
}

/** The outcome of a decided card, in one sentence; undefined while pending. */
export function outcomeLine(card: ApprovalCard): string | undefined {
  const by = card.decidedBy ? ` by ${card.decidedBy}` : "";
  const via = card.decidedVia ? ` via ${card.decidedVia}` : "";
  switch (card.status) {
    case "pending":
      return undefined;
    case "approved":
      if (card.rememberedTo) return `Approved${by}${via}; ${rememberedLine(card)}`;
      if (card.grantState === "revoked")
        return `Approved${by}${via}; the grant was revoked${card.grantRevokedBy ? ` by ${card.grantRevokedBy}` : ""}${card.grantRevokedAt ? ` at ${card.grantRevokedAt}` : ""}`;
      if (card.grantState === "used") return `Approved${by}${via}; the approved call was made`;
      if (card.grantState === "expired")
        return `Approved${by}${via}; the grant expired ${card.grantExpiresAt ?? ""}`.trimEnd();
      return `Approved${by}${via}${card.grantExpiresAt ? `; the ${card.oneShot ? "one-shot approval" : "grant"} expires ${card.grantExpiresAt}` : ""}`;
    case "denied":
      return `Denied${by}${via}${card.decisionReason ? `: ${card.decisionReason}` : ""}`;
    case "expired":
      return "Expired: nobody decided in time";
    case "canceled":
      return "Canceled by the agent";
    case "superseded":
      return `Superseded, nothing granted: ${card.decisionReason ?? "the policy changed since this was filed"}`;
  }
}

/** Whether the card offers to make its grant a permanent rule (approve and remember). */
export function mayRemember(card: ApprovalCard): boolean {
  return (
    card.status === "approved" &&
    !card.oneShot &&
    !card.rememberedTo &&
    !card.breakGlassBy &&
    card.grantState !== "revoked"
  );
}

/** "remembered as a rule of policies/x.yaml by jordan, sam" (or written as a patch, to apply). */
export function rememberedLine(card: ApprovalCard): string {
  const [kind, ...rest] = (card.rememberedTo ?? "").split(":");
  const where = rest.join(":");
  const by = card.rememberedBy.join(", ");
  return kind === "patch"
    ? `made a permanent rule by ${by}: written as a patch to ${where} (the policies directory is not written to; apply it there)`
    : `made a permanent rule of ${where} by ${by}`;
}

/** A shorter TTL an approver can pick with one tap: 1 hour, when less than what was asked. */
export function shorterTtlSeconds(card: ApprovalCard): number | undefined {
  return card.requestedTtlSeconds > 3600 ? 3600 : undefined;
}
