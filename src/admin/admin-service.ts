import type { AgentTokenInfo, TokenService } from "../agents/token-service.js";
import { readLines } from "../audit/audit-log.js";
import type { AuditLine } from "../audit/chain.js";
import { type VerifyResult, verifyAuditChain } from "../audit/verify.js";
import type { Db } from "../db/client.js";
import { AppError } from "../errors.js";
import type { PolicyIndex } from "../policy/index.js";
import type { ImportReport, PolicyRevision, PolicyStore } from "../policy-store/policy-store.js";

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
  /** The policy in force as YAML: the baseline (active grants are added by later features). */
  yaml: string;
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
  showPolicy(project: string): Promise<EffectivePolicy>;
  policyHistory(project: string): Promise<Omit<PolicyRevision, "yaml">[]>;
  policyRevision(project: string, revision: number): Promise<PolicyRevision>;
  reloadPolicies(): Promise<ImportReport>;
  verifyAudit(): Promise<VerifyResult>;
  exportAudit(filter: AuditFilter): AsyncIterable<AuditLine>;
  migrate(): Promise<void>;
}

export interface AdminDeps {
  db: Db;
  tokens: Pick<TokenService, "create" | "list" | "revoke">;
  policies: Pick<PolicyStore, "index" | "latest" | "history" | "revision" | "importDirectory">;
  migrate: () => Promise<void>;
  /** Who is acting, as recorded in audit events (e.g. `admin-api`, `cli:alice`). */
  actor: string;
}

export function createAdmin(deps: AdminDeps): AdminOps {
  const { db, tokens, policies, actor } = deps;

  function agentWarnings(index: PolicyIndex, agent: string, project: string): string[] {
    const p = index.projects.get(project);
    if (!p)
      return [
        `project '${project}' has no policy yet: every call of this agent is denied until one is loaded`,
      ];
    if (!p.agentRoles.has(agent)) {
      return [
        `agent '${agent}' is not listed under agents in the policy of '${project}': its calls are denied until it is added`,
      ];
    }
    return [];
  }

  return {
    async createAgentToken(agent, project) {
      const { token, info } = await tokens.create(agent, project, actor);
      return { ...info, token, warnings: agentWarnings(policies.index(), agent, project) };
    },
    listAgentTokens: (project) => tokens.list(project),
    revokeAgentTokens: (sel) => tokens.revoke(sel, actor),
    async showPolicy(project) {
      const r = await policies.latest(project);
      if (!r || r.retired) {
        throw new AppError(
          "NOT_FOUND",
          r
            ? `project '${project}' was retired at revision ${r.revision}: it has no policy`
            : `no policy for project '${project}'`,
        );
      }
      return {
        project,
        revision: r.revision,
        source: r.source,
        contentHash: r.contentHash,
        createdAt: r.createdAt,
        yaml: r.yaml,
      };
    },
    async policyHistory(project) {
      const revisions = await policies.history(project);
      if (revisions.length === 0) throw new AppError("NOT_FOUND", `no policy for project '${project}'`);
      return revisions.map(({ yaml: _y, ...rest }) => rest);
    },
    async policyRevision(project, revision) {
      const r = await policies.revision(project, revision);
      if (!r) throw new AppError("NOT_FOUND", `project '${project}' has no revision ${revision}`);
      return r;
    },
    reloadPolicies: () => policies.importDirectory(actor),
    verifyAudit: () => verifyAuditChain(db),
    exportAudit: (filter) => readLines(db, filter),
    migrate: deps.migrate,
  };
}
