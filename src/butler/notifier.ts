/** What the agent is told about its access request or grant. */
export interface AgentNotification {
  type:
    | "approval_recorded"
    | "grant_ready"
    | "request_denied"
    | "request_expired"
    | "request_canceled"
    /** The request no longer matched the policy in force (or what was filed) when a person decided. */
    | "request_superseded"
    | "grant_expired"
    | "grant_revoked";
  requestId: string;
  agent: string;
  project: string;
  action: string;
  resource: string;
  branch: string | undefined;
  grantId?: string | undefined;
  expiresAt?: string | undefined;
  revision?: number | undefined;
  /** For denials, revocations and supersessions: why (the approver's words are passed on). */
  reason?: string | undefined;
}

/**
 * Tells a waiting agent what happened. Implemented over A2A (push and open streams); called from
 * the outbox, so it runs after the decision committed and is retried until it succeeds.
 */
export interface AgentNotifier {
  /** Returns how many waiting tasks (or connections) were told, when the notifier knows. */
  notify(n: AgentNotification): Promise<number | undefined>;
}
