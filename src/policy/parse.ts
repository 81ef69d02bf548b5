import { type Document, LineCounter, parseAllDocuments } from "yaml";
import type { Result } from "../result.js";
import { type FileSource, formatPath, offsetOf, parseYamlFile, type Report } from "../yaml-file.js";
import { normaliseCommand, textDenyService } from "./command.js";
import { compileGlob } from "./glob.js";
import type { PactDef } from "./pact.js";
import { collectPeople, describeIdentity, type EntryAt } from "./people.js";
import { knownKeysAt, PolicyDocumentSchema, type RawPolicyDocument } from "./schema.js";
import { parseDuration, parseTimestamp } from "./time.js";
import type {
  AgentDef,
  AlertKind,
  ApprovalRuleDef,
  ApproverDef,
  ConstraintDef,
  GrantDef,
  PolicyDocument,
  PolicyIssue,
  ProjectSettings,
  RateLimitDef,
  RiskTier,
  SecurityDef,
} from "./types.js";

/** A policy file's name (as it should appear in messages) and its text. */
export type PolicySource = FileSource;
export { formatIssue, formatPath } from "../yaml-file.js";

export const POLICY_FILE_MAX_BYTES = 1024 * 1024;

export const DEFAULT_SETTINGS: ProjectSettings = Object.freeze({
  grantTtlDefaultSeconds: 24 * 3600,
  grantTtlMaxSeconds: 7 * 24 * 3600,
  pendingTtlSeconds: 24 * 3600,
  neverGrant: [],
  approvals: { low: 1, medium: 1, high: 2 },
  risk: [],
  reminders: undefined,
  breakGlass: undefined,
  channels: { slack: undefined, telegram: undefined },
}) as ProjectSettings;

/**
 * Parses and checks one policy file. Every problem is reported (not only the first), each with
 * its line, column and path, so that `butler policy validate` can list them all.
 */
export function parsePolicyFile(src: PolicySource): Result<PolicyDocument, PolicyIssue[]> {
  return parseYamlFile(src, {
    schema: PolicyDocumentSchema,
    knownKeysAt,
    what: "a policy",
    needs: "project and agents",
    maxBytesMessage: "the file is larger than 1 MiB",
    maxBytes: POLICY_FILE_MAX_BYTES,
    multipleDocuments: "put each project in its own file",
    crossCheck,
  });
}

/** The result of parsing a whole directory of policy files. */
export interface PolicySetResult {
  /** Documents that parsed, with no duplicate project among them. */
  documents: { file: string; document: PolicyDocument }[];
  /** Files that failed, with their problems and, when it could be read, the project they name. */
  failures: { file: string; project: string | undefined; issues: PolicyIssue[] }[];
}

/**
 * Parses several files and checks that no project is defined twice. A project defined by more
 * than one file is refused in every one of them: no file may decide which version serves.
 */
export function parsePolicySet(sources: readonly PolicySource[]): PolicySetResult {
  const failures: PolicySetResult["failures"] = [];
  const byProject = new Map<string, { src: PolicySource; document: PolicyDocument }[]>();
  const sorted = [...sources].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  for (const src of sorted) {
    const r = parsePolicyFile(src);
    if (!r.ok) {
      failures.push({ file: src.file, project: guessProject(src.text), issues: r.error });
      continue;
    }
    const list = byProject.get(r.value.project) ?? [];
    list.push({ src, document: r.value });
    byProject.set(r.value.project, list);
  }
  const parsed: { src: PolicySource; document: PolicyDocument }[] = [];
  for (const [project, list] of byProject) {
    if (list.length === 1) {
      parsed.push(list[0]!);
      continue;
    }
    for (const { src } of list) {
      const others = list.filter((o) => o.src !== src).map((o) => o.src.file);
      failures.push({
        file: src.file,
        project,
        issues: [
          {
            file: src.file,
            ...positionIn(src.text, ["project"]),
            path: "project",
            message: `project '${project}' is also defined in ${others.join(", ")}; each project has exactly one policy file`,
          },
        ],
      });
    }
  }
  // People are one identity across all files: files that disagree on who someone is are refused.
  const peopleIssues = peopleProblems(parsed);
  const documents: PolicySetResult["documents"] = [];
  for (const { src, document } of parsed) {
    const issues = peopleIssues.get(src.file);
    if (issues) failures.push({ file: src.file, project: document.project, issues });
    else documents.push({ file: src.file, document });
  }
  documents.sort((a, b) => (a.file < b.file ? -1 : 1));
  failures.sort((a, b) => (a.file < b.file ? -1 : 1));
  return { documents, failures };
}

/** The line and column of the node at `path` in a (valid) policy file's text. */
function positionIn(text: string, path: (string | number)[]): { line: number; col: number } {
  const lc = new LineCounter();
  const doc = parseAllDocuments(text, { lineCounter: lc }) as Document.Parsed[];
  return lc.linePos(offsetOf(doc[0]!, path, false));
}

/**
 * Every way the files disagree about people, as issues per file: a person whose name or accounts
 * differ between two files, and a chat account two people claim. Each file involved gets an issue
 * naming the other place, so that either can be fixed.
 */
function peopleProblems(
  parsed: { src: PolicySource; document: PolicyDocument }[],
): Map<string, PolicyIssue[]> {
  const dir = collectPeople(parsed.map((p) => ({ document: p.document, file: p.src.file })));
  const text = new Map(parsed.map((p) => [p.src.file, p.src.text]));
  const out = new Map<string, PolicyIssue[]>();
  const add = (file: string, path: (string | number)[], message: string) => {
    const list = out.get(file) ?? [];
    const pos = positionIn(text.get(file) ?? "", path);
    list.push({ file, ...pos, path: formatPath(path), message });
    out.set(file, list);
  };
  const where = (at: EntryAt, path: (string | number)[] = ["id"]) => {
    const full = ["approvers", at.index, ...path];
    const pos = positionIn(text.get(at.file ?? "") ?? "", full);
    return `${at.file}:${pos.line}:${pos.col}`;
  };
  // Checked here rather than per file: a stored revision that breaks it must still load (and its
  // approvals are refused at decision time) instead of leaving the project without a policy.
  for (const { src, document } of parsed) {
    const agents = new Set(document.agents.map((a) => a.name));
    document.approvers.forEach((a, i) => {
      if (agents.has(a.id))
        add(
          src.file,
          ["approvers", i, "id"],
          `approver '${a.id}' has the name of an agent of this project; an agent never approves its own requests, so give the person another id`,
        );
    });
  }
  for (const c of dir.conflicts) {
    if (c.kind === "person") {
      for (const e of c.entries) {
        const others = c.entries
          .filter((o) => o !== e)
          .map((o) => `${where(o.at)} (${describeIdentity(o.identity)})`);
        add(
          e.at.file!,
          ["approvers", e.at.index, "id"],
          `approver '${c.id}' is defined differently in ${others.join(" and ")}; here: ${describeIdentity(e.identity)}. An approver id is one person in every project: write their name and accounts in one file and list only '- id: ${c.id}' (with tiers) elsewhere`,
        );
      }
    } else {
      for (const claim of c.claims) {
        const others = c.claims
          .filter((o) => o.id !== claim.id)
          .map((o) => `'${o.id}' (${where(o.at, o.path)})`);
        if (others.length === 0) continue;
        add(
          claim.at.file!,
          ["approvers", claim.at.index, ...claim.path],
          `${c.channel === "slack" ? "Slack" : "Telegram"} ${c.account} is claimed by approver '${claim.id}' here and by ${[...new Set(others)].join(", ")}; a chat account belongs to exactly one person`,
        );
      }
    }
  }
  return out;
}

function guessProject(text: string): string | undefined {
  const m = /^project:\s*["']?([A-Za-z0-9][A-Za-z0-9._-]{0,63})["']?\s*(#.*)?$/m.exec(text);
  return m?.[1];
}

/** Checks that need the whole document (references, uniqueness, ranges) and builds the model. */
function crossCheck(raw: RawPolicyDocument, report: Report): PolicyDocument {
  const agents = checkAgents(raw, report);
  const known: KnownAgents = {
    names: new Set(agents.map((a) => a.name)),
    roles: new Set(agents.flatMap((a) => a.roles)),
  };
  return {
    project: raw.project,
    description: raw.description,
    agents,
    grants: checkGrants(raw, known, report),
    approvers: checkApprovers(raw, report),
    settings: checkSettings(raw, report),
    providers: checkProviders(raw, report),
    budgets: checkBudgets(raw, known, report),
    requireApproval: checkApprovalRules(raw, known, report),
    rateLimits: checkRateLimits(raw, known, report),
    dataProtection: { ...raw.data_protection },
    pacts: checkPacts(raw, known, report),
    trust: raw.trust
      ? {
          initial: raw.trust.initial ?? 800,
          rules: (raw.trust.rules ?? []).map((r, i) => {
            for (const [k, a] of (r.agents ?? []).entries())
              if (!known.names.has(a))
                report(["trust", "rules", i, "agents", k], `agent '${a}' is not in agents`);
            if (r.below === undefined && r.drift === undefined)
              report(["trust", "rules", i], "needs below (a trust score), drift (minor or major), or both");
            return {
              id: r.id ?? `t_${i + 1}`,
              below: r.below,
              drift: r.drift,
              actions: r.actions,
              agents: r.agents,
              constraints: constraintsOf(r.constraints, ["trust", "rules", i, "constraints"], report),
            };
          }),
        }
      : undefined,
    security: raw.security ? securityOf(raw.security, report) : undefined,
  };
}

const DEFAULT_ALERTS: AlertKind[] = ["drift_major", "pact_violation", "trust_low", "reaction"];

function securityOf(s: NonNullable<RawPolicyDocument["security"]>, report: Report): SecurityDef {
  if (!s.slack && !s.telegram && !s.webhook_url)
    report(["security"], "names no slack channel, telegram chat or webhook_url: alerts would reach no one");
  if (s.webhook_secret && !s.webhook_url) report(["security", "webhook_secret"], "needs webhook_url");
  return {
    slack: s.slack ?? [],
    telegram: (s.telegram ?? []).map(String),
    webhookUrl: s.webhook_url,
    webhookSecret: s.webhook_secret,
    alertOn: new Set(s.alert_on ?? DEFAULT_ALERTS),
  };
}

/** The project's agents' names and the roles they hold, which grants and rules may name. */
interface KnownAgents {
  names: Set<string>;
  roles: Set<string>;
}

function checkAgents(raw: RawPolicyDocument, report: Report): AgentDef[] {
  const agents: AgentDef[] = [];
  const seen = new Set<string>();
  raw.agents.forEach((a, i) => {
    const def: AgentDef =
      typeof a === "string" ? { name: a, roles: [] } : { name: a.name, roles: a.roles ?? [] };
    if (seen.has(def.name)) report(["agents", i], `agent '${def.name}' is listed twice`);
    seen.add(def.name);
    agents.push(def);
  });
  return agents;
}

/** A grant's or rule's `agents` and `roles` name agents of this project and roles they hold. */
function checkWho(
  entry: { agents?: string[] | undefined; roles?: string[] | undefined },
  at: (string | number)[],
  known: KnownAgents,
  report: Report,
): void {
  entry.agents?.forEach((name, j) => {
    if (!known.names.has(name))
      report([...at, "agents", j], `agent '${name}' is not listed under agents of this project`);
  });
  entry.roles?.forEach((role, j) => {
    if (!known.roles.has(role))
      report([...at, "roles", j], `role '${role}' is not held by any agent of this project`);
  });
}

/** A grant's deny patterns: text for the tools and mcp services (commands, arguments), resource globs for the others. */
function checkDeny(g: NonNullable<RawPolicyDocument["grants"]>[number], i: number, report: Report): void {
  g.deny?.forEach((d, j) => {
    const at = ["grants", i, "deny", j];
    if (textDenyService(g.service)) {
      if (normaliseCommand(d) === "")
        report(at, "is empty once quotes and spaces are removed, so it would match nothing");
      return;
    }
    const r = compileGlob(d);
    if (!r.ok) report(at, `is not a valid resource pattern: it ${r.error}`);
    else if (/\s/.test(d)) report(at, "is not a valid resource pattern: resources cannot contain whitespace");
  });
}

function checkGrants(raw: RawPolicyDocument, known: KnownAgents, report: Report): GrantDef[] {
  const grantIds = new Map<string, number>();
  return (raw.grants ?? []).map((g, i) => {
    const id = g.id ?? `g_${i + 1}`;
    const seen = grantIds.get(id);
    if (seen !== undefined)
      report(["grants", i, ...(g.id ? ["id"] : [])], `grant id '${id}' is already used by grants[${seen}]`);
    grantIds.set(id, i);
    g.actions.forEach((a, j) => {
      if (a.startsWith(`${g.service}:`)) {
        report(
          ["grants", i, "actions", j],
          `'${a}' repeats the service; under service ${g.service} write '${a.slice(g.service.length + 1)}'`,
        );
      }
    });
    checkWho(g, ["grants", i], known, report);
    checkDeny(g, i, report);
    return {
      id,
      service: g.service,
      actions: g.actions,
      resources: g.resources,
      branches: g.branches,
      agents: g.agents,
      roles: g.roles,
      constraints: constraintsOf(g.constraints, ["grants", i, "constraints"], report),
      deny: g.deny ?? [],
      expiresAt: g.expires === undefined ? undefined : (parseTimestamp(g.expires) as { value: number }).value,
      description: g.description,
      approvedBy: g.approved_by,
    };
  });
}

function checkApprovers(raw: RawPolicyDocument, report: Report): ApproverDef[] {
  const seenApprover = new Set<string>();
  // Per chat: an account already seen, and the approver it is bound to.
  const bound = { slack: new Map<string, string>(), telegram: new Map<string, string>() };
  const bind = (chat: "slack" | "telegram", account: string | undefined, approver: string, i: number) => {
    if (!account) return;
    const other = bound[chat].get(account);
    if (other)
      report(
        ["approvers", i, chat, "user_id"],
        `${chat === "slack" ? "Slack" : "Telegram"} user ${account} is already bound to approver '${other}'`,
      );
    bound[chat].set(account, approver);
  };
  return (raw.approvers ?? []).map((a, i) => {
    if (seenApprover.has(a.id)) report(["approvers", i, "id"], `approver '${a.id}' is listed twice`);
    seenApprover.add(a.id);
    const slackId = a.slack?.user_id;
    bind("slack", slackId, a.id, i);
    const tgId = a.telegram?.user_id === undefined ? undefined : String(a.telegram.user_id);
    bind("telegram", tgId, a.id, i);
    return {
      id: a.id,
      name: a.name,
      email: a.email,
      slack: a.slack ? { userId: a.slack.user_id, email: a.slack.email } : undefined,
      telegram: a.telegram ? { userId: tgId } : undefined,
      tiers: a.tiers ?? ["low", "medium", "high"],
    };
  });
}

function checkSettings(raw: RawPolicyDocument, report: Report): ProjectSettings {
  const s = raw.settings;
  const seconds = (v: string | number | undefined) =>
    v === undefined ? undefined : (parseDuration(v) as { value: number }).value;
  const ttlDefault = seconds(s?.grant_ttl?.default);
  const ttlMax = seconds(s?.grant_ttl?.max);
  if (ttlDefault !== undefined && ttlMax !== undefined && ttlDefault > ttlMax) {
    report(
      ["settings", "grant_ttl", "default"],
      `the default grant TTL is longer than the maximum (${s?.grant_ttl?.max})`,
    );
  }
  const grantTtlMaxSeconds = ttlMax ?? Math.max(DEFAULT_SETTINGS.grantTtlMaxSeconds, ttlDefault ?? 0);
  return {
    grantTtlMaxSeconds,
    grantTtlDefaultSeconds:
      ttlDefault ?? Math.min(DEFAULT_SETTINGS.grantTtlDefaultSeconds, grantTtlMaxSeconds),
    pendingTtlSeconds: seconds(s?.pending_ttl) ?? DEFAULT_SETTINGS.pendingTtlSeconds,
    neverGrant: s?.never_grant ?? [],
    approvals: { ...DEFAULT_SETTINGS.approvals, ...(s?.approvals ?? {}) } as Record<RiskTier, number>,
    risk: Object.entries(s?.risk ?? {}).map(([action, tier]) => ({ action, tier })),
    reminders: remindersOf(raw, report),
    breakGlass: breakGlassOf(raw, report),
    channels: { slack: s?.channels?.slack, telegram: s?.channels?.telegram?.map(String) },
  };
}

/** Break-glass people must be approvers; emergency access lasts at most 4 hours (default 30 minutes). */
function breakGlassOf(raw: RawPolicyDocument, report: Report): ProjectSettings["breakGlass"] {
  const b = raw.settings?.break_glass;
  if (!b) return undefined;
  const ids = new Set((raw.approvers ?? []).map((a) => a.id));
  for (const [i, id] of b.people.entries())
    if (!ids.has(id))
      report(["settings", "break_glass", "people", i], `approver '${id}' is not in approvers`);
  const max = b.max_ttl === undefined ? 1800 : (parseDuration(b.max_ttl) as { value: number }).value;
  if (max > 4 * 3600)
    report(
      ["settings", "break_glass", "max_ttl"],
      "is longer than 4 hours: emergency access is short by design",
    );
  return { people: b.people, maxTtlSeconds: max };
}

function remindersOf(raw: RawPolicyDocument, report: Report): ProjectSettings["reminders"] {
  const s = raw.settings;
  const seconds = (v: string | number) => (parseDuration(v) as { value: number }).value;
  if (s?.reminder_after !== undefined && s.reminders !== undefined)
    report(
      ["settings", "reminder_after"],
      "give either reminder_after or reminders (reminders.after), not both",
    );
  if (s?.reminders === undefined)
    return s?.reminder_after === undefined
      ? undefined
      : { afterSeconds: seconds(s.reminder_after), everySeconds: undefined, escalate: undefined };
  const r = s.reminders;
  const e = r.escalate;
  const ids = new Set((raw.approvers ?? []).map((a) => a.id));
  for (const [i, id] of (e?.approvers ?? []).entries())
    if (!ids.has(id))
      report(["settings", "reminders", "escalate", "approvers", i], `approver '${id}' is not in approvers`);
  if (e && e.approvers === undefined && e.slack === undefined && e.telegram === undefined)
    report(
      ["settings", "reminders", "escalate"],
      "needs approvers, slack or telegram: who the request escalates to",
    );
  if (e?.approvers?.length && e.approvers.length >= ids.size && s.channels === undefined)
    report(
      ["settings", "reminders", "escalate", "approvers"],
      "names every approver: keep at least one approver outside the escalation group to get the first card",
    );
  return {
    afterSeconds: seconds(r.after),
    everySeconds: r.every === undefined ? undefined : seconds(r.every),
    escalate: e
      ? {
          afterSeconds: seconds(e.after),
          approvers: e.approvers ?? [],
          slack: e.slack,
          telegram: e.telegram?.map(String),
        }
      : undefined,
  };
}

function checkProviders(raw: RawPolicyDocument, report: Report): string[] {
  const providers = raw.providers ?? [];
  providers.forEach((p, i) => {
    if (providers.indexOf(p) !== i) report(["providers", i], `provider '${p}' is listed twice`);
  });
  return providers;
}

function checkBudgets(raw: RawPolicyDocument, known: KnownAgents, report: Report): PolicyDocument["budgets"] {
  const budgets = (raw.budgets ?? []).map((b, i) => ({
    id: b.id ?? `b_${i + 1}`,
    agents: b.agents,
    period: b.period,
    currency: b.currency.toUpperCase(),
    limit: b.limit,
  }));
  (raw.budgets ?? []).forEach((b, i) => {
    for (const [k, a] of (b.agents ?? []).entries())
      if (!known.names.has(a)) report(["budgets", i, "agents", k], `agent '${a}' is not in agents`);
  });
  budgets.forEach((b, i) => {
    if (budgets.findIndex((o) => o.id === b.id) !== i)
      report(["budgets", i, "id"], `budget id '${b.id}' is used twice`);
  });
  return budgets;
}

function checkPacts(raw: RawPolicyDocument, known: KnownAgents, report: Report): Map<string, PactDef> {
  const pacts = new Map<string, PactDef>();
  (raw.pacts ?? []).forEach((p, i) => {
    if (!known.names.has(p.agent)) report(["pacts", i, "agent"], `agent '${p.agent}' is not in agents`);
    if (pacts.has(p.agent))
      report(["pacts", i, "agent"], `agent '${p.agent}' has a pact already; give each agent one`);
    p.intended_tools?.forEach((t, j) => {
      const g = compileGlob(t);
      if (!g.ok) report(["pacts", i, "intended_tools", j], `is not a valid tool pattern: it ${g.error}`);
    });
    p.resources?.forEach((t, j) => {
      const g = compileGlob(t);
      if (!g.ok) report(["pacts", i, "resources", j], `is not a valid resource pattern: it ${g.error}`);
    });
    pacts.set(p.agent, pactDefOf(p));
  });
  return pacts;
}

/** A pact as written (a policy's `pacts:` entry, or one set through the admin API), compiled. */
export function pactDefOf(p: NonNullable<RawPolicyDocument["pacts"]>[number]): PactDef {
  return {
    agent: p.agent,
    purpose: p.purpose,
    expectedClassification: p.expected_classification,
    intendedTools: p.intended_tools,
    intendedOperations: p.intended_operations,
    expectedCostPerCall: p.expected_cost_per_call && {
      amount: p.expected_cost_per_call.amount,
      currency: p.expected_cost_per_call.currency.toUpperCase(),
    },
    expectedMonthlyBudget: p.expected_monthly_budget && {
      amount: p.expected_monthly_budget.amount,
      currency: p.expected_monthly_budget.currency.toUpperCase(),
    },
    costTolerance: p.cost_tolerance ?? 3,
    allowedMerchantCategories: p.allowed_merchant_categories,
    resources: p.resources,
    onViolation: p.on_violation ?? "flag",
  };
}

function checkRateLimits(raw: RawPolicyDocument, known: KnownAgents, report: Report): RateLimitDef[] {
  const limits = (raw.rate_limits ?? []).map((r, i) => {
    const window = parseDuration(r.window);
    for (const [k, a] of (r.agents ?? []).entries())
      if (!known.names.has(a)) report(["rate_limits", i, "agents", k], `agent '${a}' is not in agents`);
    return {
      id: r.id ?? `r_${i + 1}`,
      maxCalls: r.max_calls,
      windowSeconds: window.ok ? window.value : 1,
      actions: r.actions,
      agents: r.agents,
      per: r.per ?? "agent",
    };
  });
  limits.forEach((l, i) => {
    if (limits.findIndex((o) => o.id === l.id) !== i)
      report(["rate_limits", i, "id"], `rate limit id '${l.id}' is used twice`);
    if (l.windowSeconds > 31 * 86_400) report(["rate_limits", i, "window"], "must be at most 31 days");
  });
  return limits;
}

function checkApprovalRules(raw: RawPolicyDocument, known: KnownAgents, report: Report): ApprovalRuleDef[] {
  const requireApproval: ApprovalRuleDef[] = [];
  (raw.require_approval ?? []).forEach((r, i) => {
    const id = r.id ?? `r_${i + 1}`;
    if (requireApproval.some((o) => o.id === id))
      report(["require_approval", i, ...(r.id ? ["id"] : [])], `rule id '${id}' is used twice`);
    r.actions.forEach((a, j) => {
      if (!/^[a-z0-9][a-z0-9_-]*:./.test(a))
        report(
          ["require_approval", i, "actions", j],
          `'${a}' must be a full action with its service, for example stripe:payment_intents:create`,
        );
    });
    checkWho(r, ["require_approval", i], known, report);
    requireApproval.push({
      id,
      actions: r.actions,
      agents: r.agents,
      roles: r.roles,
      when: constraintsOf(r.when, ["require_approval", i, "when"], report),
      description: r.description,
    });
  });
  return requireApproval;
}

/** Parameter checks (grants' `constraints`, rules' `when`), each checked on its own. */
function constraintsOf(
  raw: Record<string, Omit<ConstraintDef, "param">> | undefined,
  at: (string | number)[],
  report: Report,
): ConstraintDef[] {
  const out: ConstraintDef[] = [];
  for (const [param, c] of Object.entries(raw ?? {})) {
    const path = [...at, param];
    if (Object.keys(c).length === 0) report(path, "names no check; use max, min, in, not_in or pattern");
    if (c.min !== undefined && c.max !== undefined && c.min > c.max)
      report(path, `min ${c.min} is greater than max ${c.max}`);
    out.push({ param, ...c });
  }
  return out;
}
