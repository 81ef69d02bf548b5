import { z } from "zod";
import { compileGlob } from "./glob.js";
import { parseDuration, parseTimestamp } from "./time.js";

/**
 * The shape of a policy document, in zod. Every object is strict: an unknown key is an error,
 * because a misspelt key that was silently ignored could widen or narrow access.
 * Cross-references (roles, agents, unique ids) are checked afterwards in parse.ts.
 */

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$/;
const nameMsg = (what: string) =>
  `must be ${/^[aeiou]/.test(what) ? "an" : "a"} ${what}: letters, digits and . _ @ : - (starting with a letter or digit, at most 128 characters)`;

export const projectName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
    "must be a project name: letters, digits and . _ - (at most 64 characters)",
  );
export const agentName = z.string().regex(NAME, nameMsg("agent name"));
const roleName = z.string().regex(NAME, nameMsg("role name"));
const approverId = z.string().regex(NAME, nameMsg("approver id"));
export const serviceName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,31}$/,
    "must be a service name: lower-case letters, digits, _ and - (for example aws, git, stripe)",
  );

const glob = (what: string, chars: RegExp, charsHint: string) =>
  z
    .string()
    .max(1024, `is longer than 1024 characters`)
    .superRefine((v, ctx) => {
      const g = compileGlob(v);
      if (!g.ok) ctx.addIssue({ code: "custom", message: `is not a valid ${what} pattern: it ${g.error}` });
      else if (!chars.test(v))
        ctx.addIssue({ code: "custom", message: `is not a valid ${what}: ${charsHint}` });
    });

/**
 * An action pattern: the verb part after `service:` in grants (`s3:GetObject`, `charges:*`), or a
 * full action in settings (`aws:iam:*`, `stripe:*`).
 */
const actionGlob = glob(
  "action",
  /^[A-Za-z0-9_.:/*?-]+$/,
  "use letters, digits and _ . : / - with * and ? as wildcards",
);
const resourceGlob = glob("resource", /^[^\s]+$/, "resources cannot contain whitespace");
const branchGlob = glob("branch", /^[^\s~^:]+$/, "branch names cannot contain whitespace, ~, ^ or :");

const duration = z.union([z.string(), z.number()]).superRefine((v, ctx) => {
  const d = parseDuration(v);
  if (!d.ok) ctx.addIssue({ code: "custom", message: d.error });
});

const timestamp = z.string().superRefine((v, ctx) => {
  const t = parseTimestamp(v);
  if (!t.ok) ctx.addIssue({ code: "custom", message: t.error });
});

const scalar = z.union([z.string(), z.number(), z.boolean()], {
  error: "must be a string, number or true/false",
});

export const constraintShape = {
  max: z.number("must be a number").optional(),
  min: z.number("must be a number").optional(),
  in: z.array(scalar).min(1, "must list at least one value").optional(),
  not_in: z.array(scalar).min(1, "must list at least one value").optional(),
  pattern: glob("parameter", /[\s\S]*/, "").optional(),
};
const constraint = z.strictObject(constraintShape);

const paramPath = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/,
    "must be a parameter name or dotted path such as amount or receiver.account_id",
  );

export const grantShape = {
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be a grant id: letters, digits and . _ - (at most 64)")
    .optional(),
  description: z.string().max(500).optional(),
  service: serviceName,
  actions: z.array(actionGlob).min(1, "must list at least one action"),
  resources: z
    .array(resourceGlob)
    .min(1, "must list at least one resource; leave the key out to cover every resource")
    .optional(),
  branches: z
    .array(branchGlob)
    .min(1, "must list at least one branch; leave the key out to cover every branch")
    .optional(),
  agents: z
    .array(agentName)
    .min(1, "must list at least one agent; leave the key out to cover every agent")
    .optional(),
  roles: z.array(roleName).min(1, "must list at least one role; leave the key out").optional(),
  constraints: z.record(paramPath, constraint).optional(),
  deny: z.array(z.string().min(1, "must not be empty").max(1024)).optional(),
  expires: timestamp.optional(),
  /** Written by the Butler on grants from approved access requests: who approved them. */
  approved_by: z.array(agentName).min(1, "must name at least one approver").optional(),
};
const grant = z.strictObject(grantShape);

export const agentShape = { name: agentName, roles: z.array(roleName).optional() };
const agent = z.union([agentName, z.strictObject(agentShape)], {
  error: "must be an agent name, or a mapping with name and roles",
});

const tier = z.enum(["low", "medium", "high"], "must be low, medium or high");

export const slackShape = {
  user_id: z
    .string()
    .regex(/^[UW][A-Z0-9]{2,20}$/, "must be a Slack user id such as U012ABCDEF")
    .optional(),
  email: z.email("must be an email address").optional(),
};
export const telegramShape = {
  user_id: z
    .union([z.number().int().positive(), z.string().regex(/^\d{1,20}$/)], {
      error: "must be a numeric Telegram user id",
    })
    .optional(),
};
export const approverShape = {
  id: approverId,
  name: z.string().max(200).optional(),
  email: z.email("must be an email address").optional(),
  slack: z.strictObject(slackShape).optional(),
  telegram: z.strictObject(telegramShape).optional(),
  tiers: z.array(tier).min(1, "must list at least one tier; leave the key out for all tiers").optional(),
};
const approver = z.strictObject(approverShape);

const approvalsCount = z
  .number()
  .int("must be a whole number")
  .min(1, "must be at least 1")
  .max(10, "must be at most 10");
export const approvalsShape = {
  low: approvalsCount.optional(),
  medium: approvalsCount.optional(),
  high: approvalsCount.optional(),
};
export const grantTtlShape = { default: duration.optional(), max: duration.optional() };
const slackTarget = z
  .string()
  .regex(/^[CGDUW][A-Z0-9]{2,20}$/, "must be a Slack channel or user id such as C012ABCDEF or U012ABCDEF");
const telegramChat = z.union([z.number().int(), z.string().regex(/^-?\d{1,20}$/)], {
  error: "must be a numeric Telegram chat id (negative for groups and channels)",
});
export const channelsShape = {
  slack: z
    .array(slackTarget)
    .min(1, "must list at least one channel or user; leave the key out to message the approvers")
    .optional(),
  telegram: z
    .array(telegramChat)
    .min(1, "must list at least one chat; leave the key out to message the approvers")
    .optional(),
};
export const escalateShape = {
  after: duration,
  /** Approver ids (from `approvers`) who get the card only when the request is escalated. */
  approvers: z.array(approverId).min(1, "must list at least one approver").optional(),
  slack: channelsShape.slack,
  telegram: channelsShape.telegram,
};
export const remindersShape = {
  after: duration,
  every: duration.optional(),
  escalate: z.strictObject(escalateShape).optional(),
};
export const breakGlassShape = {
  people: z.array(approverId).min(1, "must name at least one approver who may break the glass"),
  max_ttl: duration.optional(),
};
export const settingsShape = {
  grant_ttl: z.strictObject(grantTtlShape).optional(),
  pending_ttl: duration.optional(),
  reminder_after: duration.optional(),
  reminders: z.strictObject(remindersShape).optional(),
  break_glass: z.strictObject(breakGlassShape).optional(),
  channels: z.strictObject(channelsShape).optional(),
  never_grant: z.array(actionGlob).optional(),
  approvals: z.strictObject(approvalsShape).optional(),
  risk: z.record(actionGlob, tier).optional(),
};

export const budgetShape = {
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be a budget id: letters, digits and . _ - (at most 64)")
    .optional(),
  /** Only these agents' spending (each agent separately); the whole project's when absent. */
  agents: z.array(agentName).min(1, "must list at least one agent").optional(),
  /** Calendar periods in UTC, or one agent-supplied session (the X-Butler-Session header). */
  period: z.enum(["day", "week", "month", "session"], "must be day, week, month or session"),
  currency: z.string().regex(/^[A-Za-z]{3}$/, "must be a three-letter currency code such as EUR"),
  /** In the currency's minor unit (cents), as providers count amounts. */
  limit: z.number("must be a number").int("must be a whole number of minor units (cents)").min(0).max(1e15),
};

export const approvalRuleShape = {
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be a rule id: letters, digits and . _ - (at most 64)")
    .optional(),
  description: z.string().max(500).optional(),
  /** Full actions (globs), for example stripe:payment_intents:create. */
  actions: z.array(actionGlob).min(1, "must list at least one action"),
  agents: z
    .array(agentName)
    .min(1, "must list at least one agent; leave the key out to cover every agent")
    .optional(),
  roles: z.array(roleName).min(1, "must list at least one role; leave the key out").optional(),
  /** Only calls whose parameters meet all of these (for example amount: {min: 50001}). */
  when: z.record(paramPath, constraint).optional(),
};

export const rateLimitShape = {
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be a limit id: letters, digits and . _ - (at most 64)")
    .optional(),
  max_calls: z.number("must be a number").int("must be a whole number").min(1).max(1e9),
  /** The sliding window, such as PT1M, PT1H or 3600 (seconds). */
  window: duration,
  /** Only calls of these actions count (full actions, globs); every call when absent. */
  actions: z
    .array(actionGlob)
    .min(1, "must list at least one action; leave the key out for every call")
    .optional(),
  agents: z
    .array(agentName)
    .min(1, "must list at least one agent; leave the key out for every agent")
    .optional(),
  /** `agent`: an agent's matching calls count together; `action`: each action (tool) separately. */
  per: z.enum(["agent", "action"], "must be agent or action").optional(),
};

const money = z.strictObject({
  amount: z.number("must be a number").int("must be a whole number of minor units (cents)").min(0).max(1e15),
  currency: z.string().regex(/^[A-Za-z]{3}$/, "must be a three-letter currency code such as EUR"),
});
export const pactShape = {
  agent: agentName,
  purpose: z.string().min(1, "must say what the agent is for").max(2000),
  expected_classification: z
    .enum(
      ["public", "internal", "confidential", "restricted"],
      "must be public, internal, confidential or restricted",
    )
    .optional(),
  /** MCP tool names (stripe_list_charges) or full-action globs (stripe:charges:*). */
  intended_tools: z
    .array(
      z
        .string()
        .regex(/^[\x21-\x7e]{1,200}$/, "must be a tool name or action pattern (printable, no spaces)"),
    )
    .min(1, "must list at least one tool")
    .optional(),
  /** Operation groups of provider calls (read, write, payments...). */
  intended_operations: z
    .array(z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/, "must be an operation group name"))
    .min(1, "must list at least one group")
    .optional(),
  expected_cost_per_call: money.optional(),
  expected_monthly_budget: money.optional(),
  /** How many times the expected cost per call a call may move before it departs from the pact (default 3). */
  cost_tolerance: z.number().min(1).max(1000).optional(),
  allowed_merchant_categories: z
    .array(z.string().regex(/^\d{4}$/, "must be a four-digit merchant category code"))
    .optional(),
  /**
   * The resources that are this agent's (its cards: revolut.com/cards/card_123), as resource globs:
   * a provider's webhook events about them are its behaviour (pact, drift, trust).
   */
  resources: z.array(resourceGlob).min(1, "must list at least one resource").optional(),
  on_violation: z.enum(["flag", "deny"], "must be flag or deny").optional(),
};

export const trustRuleShape = {
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "must be a rule id: letters, digits and . _ - (at most 64)")
    .optional(),
  /** The rule applies while the agent's trust score is below this. */
  below: z.number("must be a number").int("must be a whole number").min(1).max(1000).optional(),
  /** The rule applies while the agent's drift (its highest level, any dimension) is at least this. */
  drift: z.enum(["minor", "major"], "must be minor or major").optional(),
  /** Full-action globs: the calls the rule limits (every financial tool, say). */
  actions: z.array(actionGlob).min(1, "must list at least one action"),
  agents: z
    .array(agentName)
    .min(1, "must list at least one agent; leave the key out for every agent")
    .optional(),
  /** Checked like a grant's constraints, on top of them. */
  constraints: z.record(paramPath, constraint),
};
export const trustShape = {
  /** Every agent's score to start with, 0 to 1000 (default 800). */
  initial: z.number("must be a number").int("must be a whole number").min(0).max(1000).optional(),
  rules: z.array(z.strictObject(trustRuleShape)).optional(),
};

const protectionMode = z.enum(["flag", "redact", "deny"], "must be flag, redact or deny");
export const dataProtectionShape = {
  email: protectionMode.optional(),
  iban: protectionMode.optional(),
  card_number: protectionMode.optional(),
  api_key: protectionMode.optional(),
  private_key: protectionMode.optional(),
};

/** Security alerts: drift, pact violations by events, trust falling below a rule, reactions. */
export const ALERT_KINDS = ["drift_major", "drift_minor", "pact_violation", "trust_low", "reaction"] as const;
export const securityShape = {
  /** Slack channels (ids) that get every alert of the project. */
  slack: z.array(slackTarget).min(1, "must list at least one channel; leave the key out").optional(),
  /** Telegram chats (ids) that get every alert of the project. */
  telegram: z.array(telegramChat).min(1, "must list at least one chat; leave the key out").optional(),
  /** An outgoing webhook: each alert is POSTed there as JSON, signed when `webhook_secret` is set. */
  webhook_url: z
    .url({ protocol: /^https?$/, error: "must be an http(s) URL" })
    .max(2000)
    // The URL is shown and stored as written: a credential belongs in webhook_secret, not in it.
    .refine(
      (u) => !/^https?:\/\/[^/?#]*@/i.test(u),
      "must not hold a user name or password (use webhook_secret)",
    )
    .optional(),
  /** The environment variable (or vault entry) holding the key the webhook's body is signed with. */
  webhook_secret: z
    .string()
    .regex(/^[A-Z][A-Z0-9_]{0,127}$/, "must be an environment variable name such as SECURITY_WEBHOOK_SECRET")
    .optional(),
  /** Which alerts (default: drift_major, pact_violation, trust_low, reaction). */
  alert_on: z.array(z.enum(ALERT_KINDS, `must be one of ${ALERT_KINDS.join(", ")}`)).optional(),
};

export const documentShape = {
  project: projectName,
  description: z.string().max(2000).optional(),
  agents: z.array(agent),
  grants: z.array(grant).optional(),
  approvers: z.array(approver).optional(),
  settings: z.strictObject(settingsShape).optional(),
  /** Providers (providers/*.yaml) whose operation-group defaults apply in this project. */
  providers: z.array(serviceName).optional(),
  /** Spending limits for operations that move money (providers' amount fields). */
  budgets: z.array(z.strictObject(budgetShape)).optional(),
  /** Calls a person approves one at a time, even when a grant allows them. */
  require_approval: z.array(z.strictObject(approvalRuleShape)).optional(),
  /** How many calls an agent may make in a sliding window. */
  rate_limits: z.array(z.strictObject(rateLimitShape)).optional(),
  /** Personal data and secrets in call parameters: flag, redact (in what Butler shows people) or deny. */
  data_protection: z.strictObject(dataProtectionShape).optional(),
  /** Trust scores: incidents lower an agent's score; rules tighten limits while it is low. */
  trust: z.strictObject(trustShape).optional(),
  /** What each agent is for (behavioural pacts): calls outside it are flagged or denied. */
  pacts: z.array(z.strictObject(pactShape)).optional(),
  /** Where security alerts go (a security room in Slack and Telegram, an outgoing webhook). */
  security: z.strictObject(securityShape).optional(),
};
export const PolicyDocumentSchema = z.strictObject(documentShape);
export type RawPolicyDocument = z.infer<typeof PolicyDocumentSchema>;

/**
 * The keys an object at `path` may have, for "did you mean" hints on unknown keys.
 * `path` uses numbers for list positions, as zod reports them.
 */
export function knownKeysAt(path: readonly PropertyKey[]): string[] | undefined {
  const p = path.map((k) => (typeof k === "number" ? "#" : String(k)));
  const at = p.join("/");
  if (at === "") return Object.keys(documentShape);
  if (/^grants\/#$/.test(at)) return Object.keys(grantShape);
  if (/^grants\/#\/constraints\/[^/]+$/.test(at)) return Object.keys(constraintShape);
  if (/^agents\/#$/.test(at)) return Object.keys(agentShape);
  if (/^budgets\/#$/.test(at)) return Object.keys(budgetShape);
  if (/^rate_limits\/#$/.test(at)) return Object.keys(rateLimitShape);
  if (at === "data_protection") return Object.keys(dataProtectionShape);
  if (/^pacts\/#$/.test(at)) return Object.keys(pactShape);
  if (at === "security") return Object.keys(securityShape);
  if (at === "trust") return Object.keys(trustShape);
  if (/^trust\/rules\/#$/.test(at)) return Object.keys(trustRuleShape);
  if (/^trust\/rules\/#\/constraints\/[^/]+$/.test(at)) return Object.keys(constraintShape);
  if (/^require_approval\/#$/.test(at)) return Object.keys(approvalRuleShape);
  if (/^require_approval\/#\/when\/[^/]+$/.test(at)) return Object.keys(constraintShape);
  if (/^approvers\/#$/.test(at)) return Object.keys(approverShape);
  if (/^approvers\/#\/slack$/.test(at)) return Object.keys(slackShape);
  if (/^approvers\/#\/telegram$/.test(at)) return Object.keys(telegramShape);
  if (at === "settings") return Object.keys(settingsShape);
  if (at === "settings/grant_ttl") return Object.keys(grantTtlShape);
  if (at === "settings/approvals") return Object.keys(approvalsShape);
  if (at === "settings/channels") return Object.keys(channelsShape);
  if (at === "settings/reminders") return Object.keys(remindersShape);
  if (at === "settings/break_glass") return Object.keys(breakGlassShape);
  if (at === "settings/reminders/escalate") return Object.keys(escalateShape);
  return undefined;
}
