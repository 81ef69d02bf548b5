import type { AdminOps, AuditFilter, CreatedToken, EffectivePolicy } from "../admin/admin-service.js";
import type { AgentTokenInfo } from "../agents/token-service.js";
import type { AuditLine } from "../audit/chain.js";
import type { VerifyResult } from "../audit/verify.js";
import type { AccessRequestView, GrantView } from "../butler/butler-service.js";
import { AppError, type ErrorCode } from "../errors.js";
import type { ImportReport, PolicyRevision } from "../policy-store/policy-store.js";

/** The admin operations of a running server, over its admin API (what the CLI uses while it runs). */
export function httpAdmin(baseUrl: string, adminToken: string): AdminOps {
  async function call<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
    const res = await send(method, path, body);
    return (await res.json()) as T;
  }

  async function send(method: "GET" | "POST", path: string, body?: unknown): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${baseUrl}/v1/admin${path}`, {
        method,
        headers: {
          authorization: `Bearer ${adminToken}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new AppError(
        "UNAVAILABLE",
        `cannot reach the Butler server at ${baseUrl}: ${(e as Error).cause ?? (e as Error).message}`,
      );
    }
    if (!res.ok) {
      let code: ErrorCode = "INTERNAL";
      let message = `the server answered ${res.status}`;
      try {
        const j = (await res.json()) as { error?: { code?: ErrorCode; message?: string } };
        if (j.error?.code) code = j.error.code;
        if (j.error?.message) message = j.error.message;
      } catch {
        /* not JSON: keep the status line */
      }
      throw new AppError(code, message);
    }
    return res;
  }

  const q = (params: Record<string, string | undefined>) => {
    const s = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) s.set(k, v);
    const t = s.toString();
    return t ? `?${t}` : "";
  };

  return {
    createAgentToken: (agent, project) => call<CreatedToken>("POST", "/agents", { agent, project }),
    listAgentTokens: async (project) =>
      (await call<{ tokens: AgentTokenInfo[] }>("GET", `/agents${q({ project })}`)).tokens,
    revokeAgentTokens: async (sel) =>
      (
        await call<{ revoked: string[] }>("POST", "/agents/revoke", {
          agent: sel.agent,
          project: sel.project,
          token_id: sel.tokenId,
        })
      ).revoked,
    showPolicy: (project) => call<EffectivePolicy>("GET", `/policies/${encodeURIComponent(project)}`),
    policyHistory: async (project) =>
      (
        await call<{ revisions: Omit<PolicyRevision, "yaml" | "baseline">[] }>(
          "GET",
          `/policies/${encodeURIComponent(project)}/revisions`,
        )
      ).revisions,
    policyRevision: (project, revision) =>
      call<PolicyRevision>("GET", `/policies/${encodeURIComponent(project)}/revisions/${revision}`),
    reloadPolicies: () => call<ImportReport>("POST", "/policies/reload"),
    verifyAudit: () => call<VerifyResult>("GET", "/audit/verify"),
    exportAudit(filter: AuditFilter): AsyncIterable<AuditLine> {
      return (async function* () {
        const res = await send(
          "GET",
          `/audit/export${q({ agent: filter.agent, project: filter.project, since: filter.since?.toISOString() })}`,
        );
        if (!res.body) return;
        const decoder = new TextDecoder();
        let buf = "";
        for await (const chunk of res.body) {
          buf += decoder.decode(chunk as Uint8Array, { stream: true });
          let nl = buf.indexOf("\n");
          while (nl >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line) yield JSON.parse(line) as AuditLine;
            nl = buf.indexOf("\n");
          }
        }
        buf += decoder.decode();
        if (buf.trim()) yield JSON.parse(buf) as AuditLine;
      })();
    },
    migrate: async () => {
      await call("POST", "/db/migrate");
    },
    createApproverToken: (approver) => call("POST", "/approvers/tokens", { approver }),
    listRequests: async (filter) =>
      (
        await call<{ access_requests: AccessRequestView[] }>(
          "GET",
          `/access-requests${q({ status: filter.status, project: filter.project })}`,
        )
      ).access_requests,
    showRequest: (id) => call<AccessRequestView>("GET", `/access-requests/${encodeURIComponent(id)}`),
    reviewRequest: (id, approver, verdict, opts) =>
      call("POST", `/access-requests/${encodeURIComponent(id)}/${verdict}`, {
        approver,
        ttl: opts.ttl,
        reason: opts.reason,
      }),
    listGrants: async (filter) =>
      (
        await call<{ grants: GrantView[] }>(
          "GET",
          `/grants${q({ project: filter.project, all: filter.all ? "true" : undefined })}`,
        )
      ).grants,
    createTelegramLink: (approver) => call("POST", "/approvers/telegram-link", { approver }),
    createAuditorToken: (auditor) => call("POST", "/auditors/tokens", { auditor }),
    createDashboardLink: (approver) => call("POST", "/dashboard/links", { approver }),
    setTelegramWebhook: () => call("POST", "/telegram/webhook"),
    revokeGrant: (id, reason) => call("POST", `/grants/${encodeURIComponent(id)}/revoke`, { reason }),
    setCredential: (name, value) => call("POST", "/credentials", { name, value }),
    listCredentials: async () =>
      (await call<{ credentials: Awaited<ReturnType<AdminOps["listCredentials"]>> }>("GET", "/credentials"))
        .credentials,
    deleteCredential: (name) => call("POST", `/credentials/${encodeURIComponent(name)}/delete`),
  };
}
