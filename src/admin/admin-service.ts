import { and, desc, eq, gt, sql } from "drizzle-orm";
import { z } from "zod";
import type { AgentTokenInfo, TokenService } from "../agents/token-service.js";
import { readLines } from "../audit/audit-log.js";
import type { AuditLine } from "../audit/chain.js";
import { type VerifyResult, verifyAuditChain } from "../audit/verify.js";
import type { ApproverTokens } from "../butler/approver-tokens.js";
import type { BreakGlassInput, BreakGlassResult } from "../butler/break-glass.js";
import type { AccessRequestView, Butler, GrantView } from "../butler/butler-service.js";
import type { RememberResult } from "../butler/remember.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import { agentDrift, auditEvents, REQUEST_STATUSES } from "../db/schema.js";
import { AppError } from "../errors.js";
import { PactBody, type Pacts } from "../gateway/pacts.js";
import type { Trust } from "../gateway/trust.js";
import { compileGlob } from "../policy/glob.js";
import type { Decision, PolicyIndex } from "../policy/index.js";
import { agentName, projectName } from "../policy/schema.js";
import type { ImportReport, PolicyRevision, PolicyStore } from "../policy-store/policy-store.js";
import type { McpPins, Pin, ToolDefinition } from "../providers/mcp-pins.js";
import type { Vault } from "../providers/vault.js";
import { policyOps } from "./policy-ops.js";
import type { PolicySimulation } from "./policy-simulation.js";

/** Filters for exporting the audit log. */
export interface AuditFilter {
  agent?: string | undefined;
  project?: string | undefined;
  since?: Date | undefined;
}

export interface CreatedToken extends AgentTokenInfo {
  /** The bearer token. Shown once; only its hash is stored. */
  token: string;
  warnings: string[];
}

export interface EffectivePolicy {
  project: string;
  revision: number;
  source: string;
  contentHash: string;
  createdAt: string;
  /** The policy in force as YAML: the file with the Butler's grants in force. */
  yaml: string;
  /** For a past moment: the moment, and the Butler's grants in force then. */
  at?: string;
  grantsInForce?: {
    id: string;
    agent: string;
    action: string;
    resource: string;
    resourcePattern: string | null;
    expiresAt: string;
  }[];
}

/**
 * What operators do with Butler: the operations behind the CLI. The running server offers them
 * over its admin API; the CLI runs the same code against the database directly when no server
 * holds it. Either way the effect, and the audit trail, is the same.
 */
export interface AdminOps {
  createAgentToken(agent: string, project: string): Promise<CreatedToken>;
  listAgentTokens(project?: string): Promise<AgentTokenInfo[]>;
  revokeAgentTokens(sel: { agent: string; project: string; tokenId?: string }): Promise<string[]>;
  /** The policy in force now, or at a past moment `at` (from the stored revisions and grants). */
  showPolicy(project: string, at?: Date | undefined): Promise<EffectivePolicy>;
  /** One call decided by the policy in force at `at` (now when not given), from the stored revisions. */
  checkPolicy(
    project: string,
    call: {
      agent: string;
      action: string;
      resource?: string | undefined;
      branch?: string | undefined;
      params?: Record<string, unknown> | undefined;
    },
    at?: Date | undefined,
  ): Promise<Decision & { revision_at: number | null; at: string }>;
  policyHistory(project: string): Promise<Omit<PolicyRevision, "yaml" | "baseline">[]>;
  policyRevision(project: string, revision: number): Promise<PolicyRevision>;
  /** What a policy file would have allowed or denied over the project's audited calls (see policy-simulation.ts). */
  simulatePolicy(
    project: string,
    input: { yaml: string; file?: string | undefined; since?: string | undefined },
  ): Promise<PolicySimulation>;
  reloadPolicies(): Promise<ImportReport>;
  verifyAudit(): Promise<VerifyResult>;
  exportAudit(filter: AuditFilter): AsyncIterable<AuditLine>;
  migrate(): Promise<void>;
  createApproverToken(
    approver: string,
  ): Promise<{ token: string; token_id: string; approver: string; projects: string[]; warnings: string[] }>;
  listRequests(filter: {
    status?: string | undefined;
    project?: string | undefined;
  }): Promise<AccessRequestView[]>;
  showRequest(id: string): Promise<AccessRequestView>;
  /** Records an approver's verdict given through the CLI (the approver is named; it must be one of the project's). */
  reviewRequest(
    id: string,
    approver: string,
    verdict: "approve" | "deny",
    opts: { ttl?: string | undefined; reason?: string | undefined },
  ): Promise<{ outcome: string; request: AccessRequestView }>;
  listGrants(filter: { project?: string | undefined; all?: boolean }): Promise<GrantView[]>;
  /** Break-glass in a named person's name (settings.break_glass.people). */
  breakGlass(person: string, input: BreakGlassInput): Promise<BreakGlassResult>;
  /** Approve and remember in an approver's name: make an approved grant a rule of the policy file. */
  rememberRequest(id: string, approver: string): Promise<RememberResult>;
  /** A one-time Telegram deep link that binds the account opening it to `approver`. */
  createTelegramLink(approver: string): Promise<{ url: string; expires_at: string; approver: string }>;
  /** A token for an auditor: reads every project in the dashboard, decides nothing. */
  createAuditorToken(auditor: string): Promise<{ token: string; token_id: string; auditor: string }>;
  /** A one-time link that signs an approver in to the dashboard. */
  createDashboardLink(approver: string): Promise<{ url: string; expires_at: string; approver: string }>;
  /** Registers this server's Telegram webhook (URL and secret) with Telegram. */
  setTelegramWebhook(): Promise<{ url: string }>;
  revokeGrant(id: string, reason?: string): Promise<{ grant_id: string; revision: number }>;
  /** Stores (or replaces) a provider credential, encrypted; the value never comes back. */
  setCredential(name: string, value: string): Promise<{ name: string; created: boolean }>;
  listCredentials(): Promise<
    { name: string; key_id: string; created_at: string; updated_at: string; updated_by: string }[]
  >;
  deleteCredential(name: string): Promise<{ name: string }>;
  /** Sets an agent's pact (a new revision, audited; it takes precedence over the policy's), or with null hands it back to the policy. */
  setPact(
    agent: string,
    project: string,
    pact: unknown,
  ): Promise<{ agent: string; project: string; revision: number }>;
  /** An agent's pact (from its project's policy) and health: its pact violations of the last 30 days. */
  agentHealth(agent: string, project: string): Promise<AgentHealth>;
  /** The pinned tool definitions of the MCP servers behind Butler, with any change waiting for a person. */
  listMcpTools(server?: string): Promise<McpToolInfo[]>;
  /** Approves a changed MCP tool definition (named by the hash that was reviewed): it is pinned. */
  approveMcpTool(server: string, tool: string, hash: string): Promise<McpToolInfo>;
}

/** An agent's pact and health, as the admin API shows them. */
export interface AgentHealth {
  agent: string;
  project: string;
  pact: Record<string, unknown> | null;
  /** Where the pact in force comes from: set through the admin API (`api`, with its revision) or the policy file. */
  pact_source: "api" | "policy" | null;
  pact_revision: number | null;
  /** 100, less 10 for each pact violation of the last 30 days (at least 0). */
  health: number;
  violations_30d: number;
  recent_violations: { event_id: string; ts: string; reason: string | null; mode: unknown }[];
  /** The trust score now (null: the project has no `trust:` section). */
  trust: number | null;
  /** The trust score's changes of the last 30 days, oldest first (at most 500). */
  trust_history: { ts: string; before: number; after: number; cause: string }[];
  /** The drift level last computed, per dimension (tool, group, merchant_category), with its numbers. */
  drift: { dimension: string; level: string; computed_at: string; numbers: Record<string, unknown> }[];
}

/** A pinned MCP tool as the admin API shows it (descriptions are the upstream's text, never markup). */
export interface McpToolInfo {
  server: string;
  tool: string;
  pinned_hash: string;
  pinned_by: string;
  pinned_at: string;
  pinned: ToolDefinition;
  /** A changed definition waiting for approval, if any. */
  changed: { hash: string; seen_at: string; definition: ToolDefinition } | null;
}

function mcpToolInfo(p: { server: string; tool: string } & Pin): McpToolInfo {
  return {
    server: p.server,
    tool: p.tool,
    pinned_hash: p.pinnedHash,
    pinned_by: p.pinnedBy,
    pinned_at: p.pinnedAt.toISOString(),
    pinned: p.pinned,
    changed:
      p.changedHash && p.changed
        ? { hash: p.changedHash, seen_at: p.changedAt!.toISOString(), definition: p.changed }
        : null,
  };
}

export interface AdminDeps {
  db: Db;
  approverTokens: Pick<ApproverTokens, "create">;
  /**
   * Issues one-time dashboard sign-in codes (the dashboard's sessions). Declared here, not imported:
   * the dashboard reads policies through the admin operations, so admin/ must not depend on it.
   */
  dashboard: {
    createSignInCode(approver: string, actor: string): Promise<{ code: string; expiresAt: Date }>;
  };
  publicUrl: () => string;
  butler: Pick<
    Butler,
    "list" | "get" | "review" | "listGrants" | "revokeGrant" | "createLinkCode" | "remember" | "breakGlass"
  >;
  /** Telegram's Bot API, when Telegram is configured. */
  telegram?: { username(): Promise<string>; setWebhook(): Promise<string> } | undefined;
  tokens: Pick<TokenService, "create" | "list" | "revoke">;
  policies: Pick<PolicyStore, "index" | "latest" | "history" | "revision" | "importDirectory" | "at">;
  vault: Pick<Vault, "set" | "list" | "delete">;
  mcpPins: Pick<McpPins, "list" | "approve">;
  trust: Pick<Trust, "score">;
  pacts: Pick<Pacts, "get" | "set">;
  clock: Clock;
  migrate: () => Promise<void>;
  /** Who is acting, as recorded in audit events (e.g. `admin-api`, `cli:alice`). */
  actor: string;
}

/** Checks an argument whichever way it came (admin API or CLI), with the policy's own name rules. */
export function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success)
    throw new AppError("INVALID_INPUT", `${what} ${r.error.issues[0]?.message ?? "is not valid"}`);
  return r.data;
}

const mcpServerName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "must be an MCP server's name (mcp_servers/<name>.yaml)");
const mcpTool = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be an upstream tool's name");
const sha256Hex = z
  .string()
  .regex(/^[0-9a-f]{64}$/, "must be the 64 hex characters of the definition's hash");
const requestId = z.string().regex(/^req_[a-z0-9]{16}$/, "must be an id such as req_0123456789abcdef");
const approverId = agentName;
const requestStatus = z.enum(REQUEST_STATUSES, `must be one of ${REQUEST_STATUSES.join(", ")}`);
const tokenId = z.string().regex(/^tok_[a-z0-9]{16}$/, "must be a token id such as tok_0123456789abcdef");
export const revisionNumber = z.number().int().min(1, "must be 1 or more").max(2_147_483_647, "is too large");

/** Why a new agent token would not work yet: its project has no policy, or the policy does not list the agent. */
function agentWarnings(index: PolicyIndex, agent: string, project: string): string[] {
  const p = index.projects.get(project);
  if (!p)
    return [`project '${project}' has no policy yet: every call of this agent is denied until one is loaded`];
  if (!p.agentRoles.has(agent)) {
    return [
      `agent '${agent}' is not listed under agents in the policy of '${project}': its calls are denied until it is added`,
    ];
  }
  return [];
}

/** The projects whose policy names `approver` among its approvers. */
function projectsApprovedBy(index: PolicyIndex, approver: string): string[] {
  return [...index.projects.values()]
    .filter((p) => p.document.approvers.some((a) => a.id === approver))
    .map((p) => p.name);
}

export function createAdmin(deps: AdminDeps): AdminOps {
  const { db, tokens, policies, actor, butler } = deps;

  return {
    async createAgentToken(agent, project) {
      check(agentName, agent, "agent");
      check(projectName, project, "project");
      const { token, info } = await tokens.create(agent, project, actor);
      return { ...info, token, warnings: agentWarnings(policies.index(), agent, project) };
    },
    async listAgentTokens(project) {
      if (project !== undefined) check(projectName, project, "project");
      return tokens.list(project);
    },
    async revokeAgentTokens(sel) {
      check(agentName, sel.agent, "agent");
      check(projectName, sel.project, "project");
      if (sel.tokenId !== undefined) check(tokenId, sel.tokenId, "token");
      return tokens.revoke(sel, actor);
    },
    ...policyOps(deps),
    reloadPolicies: () => policies.importDirectory(actor),
    verifyAudit: () => verifyAuditChain(db),
    exportAudit(filter) {
      if (filter.agent !== undefined) check(agentName, filter.agent, "agent");
      if (filter.project !== undefined) check(projectName, filter.project, "project");
      return readLines(db, filter);
    },
    migrate: deps.migrate,
    async createApproverToken(approver) {
      check(approverId, approver, "approver");
      const projects = projectsApprovedBy(policies.index(), approver);
      const { token, tokenId } = await deps.approverTokens.create(approver, actor);
      return {
        token,
        token_id: tokenId,
        approver,
        projects,
        warnings:
          projects.length === 0
            ? [
                `'${approver}' is not an approver of any project yet: the token can decide nothing until a policy names it`,
              ]
            : [],
      };
    },
    async listRequests(filter) {
      const status = filter.status === undefined ? undefined : check(requestStatus, filter.status, "status");
      if (filter.project !== undefined) check(projectName, filter.project, "project");
      return butler.list({ status, project: filter.project });
    },
    async showRequest(id) {
      check(requestId, id, "request");
      return butler.get(id);
    },
    async reviewRequest(id, approver, verdict, opts) {
      check(requestId, id, "request");
      check(approverId, approver, "approver");
      return butler.review({ approver, channel: "cli" }, id, verdict, opts);
    },
    async breakGlass(person, input) {
      check(approverId, person, "person");
      check(projectName, input.project, "project");
      check(agentName, input.agent, "agent");
      return butler.breakGlass(person, input);
    },
    async rememberRequest(id, approver) {
      check(requestId, id, "request");
      check(approverId, approver, "approver");
      return butler.remember(approver, id);
    },
    async listGrants(filter) {
      if (filter.project !== undefined) check(projectName, filter.project, "project");
      return butler.listGrants(filter);
    },
    async createTelegramLink(approver) {
      check(approverId, approver, "approver");
      if (!deps.telegram)
        throw new AppError("NOT_CONFIGURED", "Telegram is not configured: set TELEGRAM_BOT_TOKEN");
      const username = await deps.telegram.username();
      const { code, expiresAt } = await butler.createLinkCode(approver, "telegram", actor);
      return { url: `https://t.me/${username}?start=${code}`, expires_at: expiresAt, approver };
    },
    async createAuditorToken(auditor) {
      check(approverId, auditor, "auditor");
      const { token, tokenId } = await deps.approverTokens.create(auditor, actor, "auditor");
      return { token, token_id: tokenId, auditor };
    },
    async createDashboardLink(approver) {
      check(approverId, approver, "approver");
      if (projectsApprovedBy(policies.index(), approver).length === 0)
        throw new AppError(
          "NOT_FOUND",
          `'${approver}' is not an approver of any project: no policy names them`,
        );
      const { code, expiresAt } = await deps.dashboard.createSignInCode(approver, actor);
      return {
        url: `${deps.publicUrl()}/dashboard/sign-in?code=${code}`,
        expires_at: expiresAt.toISOString(),
        approver,
      };
    },
    async setTelegramWebhook() {
      if (!deps.telegram)
        throw new AppError("NOT_CONFIGURED", "Telegram is not configured: set TELEGRAM_BOT_TOKEN");
      return { url: await deps.telegram.setWebhook() };
    },
    async revokeGrant(id, reason) {
      check(requestId, id, "grant");
      return butler.revokeGrant(id, actor, reason);
    },
    setCredential: (name, value) => deps.vault.set(name, value, actor),
    listCredentials: () => deps.vault.list(),
    deleteCredential: (name) => deps.vault.delete(name, actor),
    agentHealth: (agent, project) => agentHealthOf(deps, agent, project),
    setPact: (agent, project, pact) => setPactOf(deps, actor, agent, project, pact),
    async listMcpTools(server) {
      if (server !== undefined) check(mcpServerName, server, "server");
      return (await deps.mcpPins.list(server)).map(mcpToolInfo);
    },
    async approveMcpTool(server, tool, hash) {
      check(mcpServerName, server, "server");
      check(mcpTool, tool, "tool");
      check(sha256Hex, hash, "hash");
      const pin = await deps.mcpPins.approve(server, tool, hash, actor);
      return mcpToolInfo({ server, tool, ...pin });
    },
  };
}

/** An agent's pact (from its project's policy) and its pact violations of the last 30 days. */
async function agentHealthOf(deps: AdminDeps, agent: string, project: string): Promise<AgentHealth> {
  check(agentName, agent, "agent");
  check(projectName, project, "project");
  const p = deps.policies.index().projects.get(project);
  if (!p) throw new AppError("NOT_FOUND", `project '${project}' has no policy`);
  if (!p.agentRoles.has(agent))
    throw new AppError("NOT_FOUND", `agent '${agent}' is not in project ${project}`);
  const since = new Date(deps.clock.now().getTime() - 30 * 86_400_000);
  const ofAgent = (type: string) =>
    and(
      eq(auditEvents.type, type),
      eq(auditEvents.project, project),
      eq(auditEvents.agent, agent),
      gt(auditEvents.ts, since),
    );
  const [{ violations }] = (await deps.db
    .select({ violations: sql<number>`count(*)::int` })
    .from(auditEvents)
    .where(ofAgent("pact.violated"))) as [{ violations: number }];
  const rows = await deps.db
    .select({
      eventId: auditEvents.eventId,
      ts: auditEvents.ts,
      reason: auditEvents.reason,
      details: auditEvents.details,
    })
    .from(auditEvents)
    .where(ofAgent("pact.violated"))
    .orderBy(desc(auditEvents.seq))
    .limit(10);
  const changes = await deps.db
    .select({ ts: auditEvents.ts, details: auditEvents.details })
    .from(auditEvents)
    .where(ofAgent("trust.changed"))
    .orderBy(desc(auditEvents.seq))
    .limit(500);
  const drifts = await deps.db
    .select()
    .from(agentDrift)
    .where(and(eq(agentDrift.project, project), eq(agentDrift.agent, agent)));
  const trust = p.document.trust ? await deps.trust.score(project, agent, p.document.trust.initial) : null;
  const api = deps.pacts.get(project, agent);
  const pact = api?.pact ?? p.document.pacts.get(agent);
  return {
    agent,
    project,
    pact: pact
      ? {
          purpose: pact.purpose,
          expected_classification: pact.expectedClassification ?? null,
          intended_tools: pact.intendedTools ?? null,
          intended_operations: pact.intendedOperations ?? null,
          expected_cost_per_call: pact.expectedCostPerCall ?? null,
          expected_monthly_budget: pact.expectedMonthlyBudget ?? null,
          cost_tolerance: pact.costTolerance,
          allowed_merchant_categories: pact.allowedMerchantCategories ?? null,
          resources: pact.resources ?? null,
          on_violation: pact.onViolation,
        }
      : null,
    health: Math.max(0, 100 - 10 * violations),
    violations_30d: violations,
    pact_source: api?.pact ? "api" : pact ? "policy" : null,
    pact_revision: api?.pact ? api.revision : null,
    trust,
    trust_history: changes.reverse().map((c) => ({
      ts: c.ts.toISOString(),
      before: Number(c.details.before),
      after: Number(c.details.after),
      cause: String(c.details.cause),
    })),
    drift: drifts.map((d) => ({
      dimension: d.dimension,
      level: d.level,
      computed_at: d.computedAt.toISOString(),
      numbers: d.numbers,
    })),
    recent_violations: rows.map((r) => ({
      event_id: r.eventId,
      ts: r.ts.toISOString(),
      reason: r.reason,
      mode: r.details.mode,
    })),
  };
}

/** Sets (or with null clears) an agent's pact after checking it, as a person (the admin actor). */
async function setPactOf(deps: AdminDeps, actor: string, agent: string, project: string, pact: unknown) {
  check(agentName, agent, "agent");
  check(projectName, project, "project");
  const p = deps.policies.index().projects.get(project);
  if (!p) throw new AppError("NOT_FOUND", `project '${project}' has no policy`);
  if (!p.agentRoles.has(agent))
    throw new AppError("NOT_FOUND", `agent '${agent}' is not in project ${project}`);
  let body: z.output<typeof PactBody> | null = null;
  if (pact !== null) {
    const r = PactBody.safeParse(pact);
    if (!r.success)
      throw new AppError(
        "INVALID_INPUT",
        `pact: ${r.error.issues.map((i) => `${i.path.join(".") || "(the pact)"} ${i.message}`).join("; ")}`,
      );
    body = r.data;
    // The same checks as a policy file's pacts: entry.
    body.intended_tools?.forEach((t, i) => {
      const g = compileGlob(t);
      if (!g.ok)
        throw new AppError(
          "INVALID_INPUT",
          `pact: intended_tools.${i} is not a valid tool pattern: it ${g.error}`,
        );
    });
  }
  return { agent, project, revision: await deps.pacts.set(project, agent, body, actor) };
}
