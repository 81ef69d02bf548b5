import type { FileIssue } from "../yaml-file.js";
import type { PactDef } from "./pact.js";
import type { DataProtection } from "./sensitive.js";

/**
 * The policy model: what a project's YAML document means once it has been parsed and checked.
 * Everything here is plain data; see compile.ts for the index the decision engine runs on.
 */

export type RiskTier = "low" | "medium" | "high";
export const RISK_TIERS: readonly RiskTier[] = ["low", "medium", "high"];

/** An agent of the project and the roles it holds. */
export interface AgentDef {
  name: string;
  roles: string[];
}

/** One check on a call parameter. Absent fields are not checked; at least one is present. */
export interface ConstraintDef {
  /** Dotted path into the call's `params`, e.g. `amount` or `receiver.account_id`. */
  param: string;
  max?: number;
  min?: number;
  in?: (string | number | boolean)[];
  not_in?: (string | number | boolean)[];
  /** A glob (same syntax as resources) the parameter, as a string, must match. */
  pattern?: string;
}

/** A rule that allows actions of one service, possibly narrowed to agents, roles and parameters. */
export interface GrantDef {
  /** `id` as written, or `g_<n>` for the n-th grant (1-based) of the document. */
  id: string;
  service: string;
  /** Globs over the part of the action after `service:` (e.g. `s3:GetObject`, `charges:*`). */
  actions: string[];
  /** Resource globs; a grant without `resources` covers every resource. */
  resources: string[] | undefined;
  /** Branch globs; a grant with `branches` only covers calls that name a matching branch. */
  branches: string[] | undefined;
  /** When present, only these agents (or holders of `roles`) are covered. */
  agents: string[] | undefined;
  roles: string[] | undefined;
  constraints: ConstraintDef[];
  /** For `tools`: substrings of command text that are refused; for other services: resource globs. */
  deny: string[];
  /** Epoch milliseconds after which the grant no longer allows anything. */
  expiresAt: number | undefined;
  description: string | undefined;
  /** Who approved it, for grants from access requests. */
  approvedBy: string[] | undefined;
}

/**
 * Calls that need a person for each call (`require_approval:`), even when a grant allows them:
 * the call is answered `approval_required`, and an approval allows exactly that call once.
 */
export interface ApprovalRuleDef {
  /** As written, or `r_<n>` for the n-th rule (1-based). */
  id: string;
  /** Full-action globs (`stripe:payment_intents:create`, `revolut:*`). */
  actions: string[];
  /** When present, only calls of these agents (or holders of `roles`) are covered. */
  agents: string[] | undefined;
  roles: string[] | undefined;
  /**
   * Only calls whose parameters meet every one of these checks (for example `amount: {min: 50001}`);
   * every call of the actions when empty. A parameter the call does not have counts as met.
   */
  when: ConstraintDef[];
  description: string | undefined;
}

/** A person who may decide access requests, and how chat platforms identify them. */
export interface ApproverDef {
  id: string;
  name: string | undefined;
  email: string | undefined;
  slack: { userId: string | undefined; email: string | undefined } | undefined;
  telegram: { userId: string | undefined } | undefined;
  /** Risk tiers this approver may decide; all tiers when not given. */
  tiers: RiskTier[];
}

/** Butler settings of one project, with defaults filled in. */
export interface ProjectSettings {
  grantTtlDefaultSeconds: number;
  grantTtlMaxSeconds: number;
  pendingTtlSeconds: number;
  /** Full-action globs (e.g. `aws:iam:*`) that no access request may ever be granted. */
  neverGrant: string[];
  approvals: Record<RiskTier, number>;
  /** Full-action globs mapped to a tier, overriding the built-in classification; first match wins. */
  risk: { action: string; tier: RiskTier }[];
  /** Who may open emergency access without approvers, and for how long at most; nobody when undefined. */
  breakGlass: { people: string[]; maxTtlSeconds: number } | undefined;
  /** When a still-pending request's cards are reminded, and who it escalates to; none when undefined. */
  reminders: ReminderSchedule | undefined;
  /**
   * Where approval cards go, per platform: Slack channel or user ids, Telegram chat ids. When a
   * platform is not listed, each approver with an identity on it gets the card directly.
   */
  channels: { slack: string[] | undefined; telegram: string[] | undefined };
}

/**
 * Reminders of a pending request: the first `afterSeconds` after it was filed, then every
 * `everySeconds` (once when undefined) until it is decided or expires; escalation puts the card
 * before a second group `escalate.afterSeconds` after it was filed.
 */
export interface ReminderSchedule {
  afterSeconds: number;
  everySeconds: number | undefined;
  escalate:
    | {
        afterSeconds: number;
        /** Approver ids who get the card (directly) only once the request is escalated. */
        approvers: string[];
        /** Rooms the escalated card goes to, per platform (as `channels`). */
        slack: string[] | undefined;
        telegram: string[] | undefined;
      }
    | undefined;
}

/** One project's policy document. */
export interface PolicyDocument {
  project: string;
  description: string | undefined;
  agents: AgentDef[];
  grants: GrantDef[];
  approvers: ApproverDef[];
  settings: ProjectSettings;
  /**
   * Providers whose operation-group defaults apply here (for example reads allowed). A project
   * that names none denies every provider call no grant allows.
   */
  providers: string[];
  budgets: BudgetDef[];
  /** Calls a person approves one at a time. */
  requireApproval: ApprovalRuleDef[];
  rateLimits: RateLimitDef[];
  /** What to do with personal data and secrets found in call parameters (kinds not named: nothing). */
  dataProtection: DataProtection;
  /** Behavioural pacts, by agent. */
  pacts: ReadonlyMap<string, PactDef>;
  /** Trust scores (none: the project does not use them, and no incident changes a score). */
  trust: { initial: number; rules: TrustRuleDef[] } | undefined;
  /** Where security alerts go, and which (none: the project sends none). */
  security: SecurityDef | undefined;
}

export type AlertKind =
  | "drift_major"
  | "drift_minor"
  | "pact_violation"
  | "trust_low"
  | "reaction"
  /** Always sent, whatever `alert_on` says: someone opened emergency access. */
  | "break_glass";

export interface SecurityDef {
  slack: string[];
  telegram: string[];
  webhookUrl: string | undefined;
  /** The name of the credential the webhook's body is signed with. */
  webhookSecret: string | undefined;
  alertOn: ReadonlySet<AlertKind>;
}

/**
 * While an agent's trust is below `below` (and, when `drift` is given, its drift is at least that),
 * calls of `actions` must also meet `constraints`. At least one of the two conditions is given.
 */
export interface TrustRuleDef {
  /** As written, or `t_<n>` for the n-th rule (1-based). */
  id: string;
  below: number | undefined;
  drift: "minor" | "major" | undefined;
  actions: string[];
  agents: string[] | undefined;
  constraints: ConstraintDef[];
}

/** At most `maxCalls` calls in any `windowSeconds` (a sliding window), per agent or per agent and action. */
export interface RateLimitDef {
  /** As written, or `r_<n>` for the n-th limit (1-based). */
  id: string;
  maxCalls: number;
  windowSeconds: number;
  actions: string[] | undefined;
  agents: string[] | undefined;
  per: "agent" | "action";
}

/** A spending limit: per agent (or for the whole project), per period or per session. */
export interface BudgetDef {
  /** As written, or `b_<n>` for the n-th budget (1-based). */
  id: string;
  agents: string[] | undefined;
  period: "day" | "week" | "month" | "session";
  /** Upper-case ISO 4217 code. */
  currency: string;
  /** Minor units (cents). */
  limit: number;
}

/** One problem found in a policy file, located precisely enough to fix it. */
export type PolicyIssue = FileIssue;

/** A call an agent wants to make. `action` is `service:verb...` (e.g. `aws:s3:GetObject`). */
export interface Call {
  agent: string;
  project: string;
  action: string;
  resource: string;
  branch?: string | undefined;
  params?: Record<string, unknown> | undefined;
}

/** Why a call was denied, as a stable code (the `reason` is the sentence for people). */
export type DenyCode =
  | "no_project"
  | "unknown_agent"
  | "no_service_grant"
  | "no_action_grant"
  | "agent_not_covered"
  | "resource_not_covered"
  | "branch_not_covered"
  | "grant_expired"
  | "constraint_failed"
  | "deny_pattern"
  | "invalid_action"
  /** A provider's operation group denies by default and no grant allows the call. */
  | "op_group_denied"
  /** A person must approve this exact call (require_approval, or the operation's `approval: each_call`). */
  | "approval_required"
  /** The one-shot approval of this exact call was already used. */
  | "one_shot_used"
  /** The parameters hold personal data or a secret the project's data_protection denies. */
  | "sensitive_data"
  /** A rate limit of the project has no room for the call now. */
  | "rate_limited"
  /** The call departs from the agent's behavioural pact, which says to deny such calls. */
  | "pact_violation";

export type Decision =
  | {
      decision: "ALLOW";
      reason: string;
      grantId: string;
      expiresAt: number | undefined;
      approvedBy: string[] | undefined;
      revision: number;
    }
  | {
      decision: "DENY";
      code: DenyCode;
      reason: string;
      grantId: string | undefined;
      revision: number | undefined;
    };
