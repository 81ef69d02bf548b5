import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { A2AService } from "../a2a/a2a-service.js";
import { registerA2ARoutes } from "../a2a/routes.js";
import type { AdminOps } from "../admin/admin-service.js";
import type { TokenService } from "../agents/token-service.js";
import { canonicalJson } from "../audit/chain.js";
import type { ApproverTokens } from "../butler/approver-tokens.js";
import type { Butler } from "../butler/butler-service.js";
import { registerButlerRoutes } from "../butler/routes.js";
import type { ApprovalChannel } from "../channels/channel.js";
import { type DashboardDeps, registerDashboard } from "../dashboard/routes.js";
import { AppError, RETRY_AFTER_SECONDS } from "../errors.js";
import type { Gateway } from "../gateway/gateway-service.js";
import { requireAdmin, requireAgent } from "../http/auth.js";
import { createFastify } from "../http/fastify.js";
import { paramsObject, parseInput, safeText, storable } from "../http/validation.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { agentName, projectName } from "../policy/schema.js";
import { parseTimestamp } from "../policy/time.js";
import type { ProviderGateway } from "../providers/provider-gateway.js";
import { registerProviderRoutes } from "../providers/routes.js";

export interface AppDeps {
  log: Logger;
  bodyLimitBytes: number;
  trustProxy: boolean;
  tokens: Pick<TokenService, "authenticate">;
  approverTokens: Pick<ApproverTokens, "authenticate">;
  butler: Butler;
  gateway: Gateway;
  metrics: Metrics;
  admin: AdminOps;
  /** The A2A agent (agent card and JSON-RPC endpoint). */
  a2a?: A2AService;
  /** Providers in the call path (operations and the transparent proxy). */
  providers?: ProviderGateway;
  /** Approval channels; those with webhooks mount them here. */
  channels?: readonly ApprovalChannel[];
  /** The web dashboard. */
  dashboard?: Omit<DashboardDeps, "closing" | "log">;
  adminToken: string;
  /** A random id of this server process, so that the CLI can tell it is talking to the right one. */
  instanceId: string;
  /** Throws (with a reason) when the server should not receive traffic. */
  checkReady: () => Promise<void>;
  /**
   * The state of each part the server depends on (database, approval channels): `up`, or what is
   * wrong (`down`, `degraded`, `starting`, `unknown`). Must answer at once, without I/O.
   */
  components?: () => Record<string, string>;
}

const AuthorizeBody = z.strictObject({
  action: safeText(256).pipe(
    z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9_-]*:\S+$/,
        "must be service:verb, for example aws:s3:GetObject or stripe:charges:read",
      ),
  ),
  resource: safeText(2048).optional(),
  branch: safeText(256).optional(),
  params: paramsObject.optional(),
});

const AgentBody = z.strictObject({ agent: agentName, project: projectName });
const RevokeBody = z.strictObject({
  agent: agentName,
  project: projectName,
  token_id: z
    .string()
    .regex(/^tok_[a-z0-9]{16}$/, "must be a token id such as tok_…")
    .optional(),
});
const ProjectParams = z.strictObject({ project: projectName });
const credentialName = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{0,127}$/, "must be upper-case letters, digits and _ such as STRIPE_API_KEY");
const CredentialBody = z.strictObject({
  name: credentialName,
  value: z
    .string()
    .min(1, "is empty")
    .max(16_384)
    .refine(storable, "must be text without NUL characters or unpaired surrogates"),
});
const CredentialParams = z.strictObject({ name: credentialName });
const RevisionParams = z.strictObject({
  project: projectName,
  revision: z
    .string()
    .regex(/^\d{1,9}$/, "must be a revision number")
    .transform(Number),
});
const ListQuery = z.strictObject({ project: projectName.optional() });
const ExportQuery = z.strictObject({
  agent: agentName.optional(),
  project: projectName.optional(),
  since: z
    .string()
    .refine((s) => parseTimestamp(s).ok, "must be a timestamp with a time zone, e.g. 2026-05-01T00:00:00Z")
    .optional(),
});

/** Builds the HTTP server (without listening): gateway, health, metrics and admin API. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = createFastify({
    log: deps.log,
    bodyLimitBytes: deps.bodyLimitBytes,
    trustProxy: deps.trustProxy,
  });

  // Liveness: the process answers. It is 200 while the process lives, whatever its parts say
  // (a restart would not bring the database or Slack back); the parts' states are for people.
  app.get("/healthz", async () => {
    const components = deps.components?.() ?? {};
    const degraded = Object.values(components).some((s) => s !== "up");
    return { status: degraded ? "degraded" : "ok", instance: deps.instanceId, components };
  });
  // Readiness: the server can decide (its database answers, within the database timeout).
  app.get("/readyz", async (req, reply) => {
    try {
      await deps.checkReady();
      return { status: "ready" };
    } catch (e) {
      // The reason goes to the log only: a database error can name internal hosts and users.
      req.log.warn({ err: e }, "not ready");
      return reply.code(503).header("retry-after", String(RETRY_AFTER_SECONDS)).send({ status: "not ready" });
    }
  });
  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });

  app.post("/v1/authorize", async (req) => {
    const identity = await requireAgent(req, deps.tokens);
    const body = parseInput(AuthorizeBody, req.body, "body");
    return deps.gateway.authorize(identity, body);
  });

  registerButlerRoutes(app, {
    butler: deps.butler,
    tokens: deps.tokens,
    approverTokens: deps.approverTokens,
  });
  if (deps.a2a) {
    // Open A2A streams end when the server begins to close, so that closing does not wait on them.
    const closing = new AbortController();
    app.addHook("preClose", async () => closing.abort());
    await registerA2ARoutes(app, {
      a2a: deps.a2a,
      tokens: deps.tokens,
      log: deps.log,
      bodyLimitBytes: deps.bodyLimitBytes,
      closing: closing.signal,
    });
  }
  if (deps.providers)
    await registerProviderRoutes(app, {
      providers: deps.providers,
      tokens: deps.tokens,
      bodyLimitBytes: deps.bodyLimitBytes,
    });
  for (const channel of deps.channels ?? []) await channel.mount?.(app);
  if (deps.dashboard) {
    const closing = new AbortController();
    app.addHook("preClose", async () => closing.abort());
    await registerDashboard(app, { ...deps.dashboard, closing: closing.signal, log: deps.log });
  }

  await app.register(
    async (admin) => {
      admin.addHook("onRequest", async (req) => requireAdmin(req, deps.adminToken));
      admin.post("/agents", async (req, reply) => {
        const b = parseInput(AgentBody, req.body, "body");
        return reply.code(201).send(await deps.admin.createAgentToken(b.agent, b.project));
      });
      admin.get("/agents", async (req) => {
        const q = parseInput(ListQuery, req.query, "query");
        return { tokens: await deps.admin.listAgentTokens(q.project) };
      });
      admin.post("/agents/revoke", async (req) => {
        const b = parseInput(RevokeBody, req.body, "body");
        return {
          revoked: await deps.admin.revokeAgentTokens({
            agent: b.agent,
            project: b.project,
            ...(b.token_id ? { tokenId: b.token_id } : {}),
          }),
        };
      });
      admin.get("/policies/:project", async (req) => {
        const p = parseInput(ProjectParams, req.params, "params");
        return deps.admin.showPolicy(p.project);
      });
      admin.get("/policies/:project/revisions", async (req) => {
        const p = parseInput(ProjectParams, req.params, "params");
        return { revisions: await deps.admin.policyHistory(p.project) };
      });
      admin.get("/policies/:project/revisions/:revision", async (req) => {
        const p = parseInput(RevisionParams, req.params, "params");
        return deps.admin.policyRevision(p.project, p.revision);
      });
      admin.post("/policies/reload", async () => deps.admin.reloadPolicies());
      admin.get("/audit/verify", async () => deps.admin.verifyAudit());
      admin.get("/audit/export", async (req, reply) => {
        const q = parseInput(ExportQuery, req.query, "query");
        const lines = deps.admin.exportAudit({
          agent: q.agent,
          project: q.project,
          since: q.since ? new Date((parseTimestamp(q.since) as { value: number }).value) : undefined,
        });
        reply.header("content-type", "application/x-ndjson; charset=utf-8");
        if (req.method === "HEAD") return reply.send();
        // A generator streams page by page: memory stays flat however long the log is.
        return reply.send(
          Readable.from(
            (async function* () {
              for await (const l of lines) yield `${canonicalJson(l)}\n`;
            })(),
          ),
        );
      });
      admin.post("/db/migrate", async () => {
        await deps.admin.migrate();
        return { migrated: true };
      });
      admin.post("/approvers/tokens", async (req, reply) => {
        const b = parseInput(z.strictObject({ approver: agentName }), req.body, "body");
        return reply.code(201).send(await deps.admin.createApproverToken(b.approver));
      });
      admin.post("/approvers/telegram-link", async (req, reply) => {
        const b = parseInput(z.strictObject({ approver: agentName }), req.body, "body");
        return reply.code(201).send(await deps.admin.createTelegramLink(b.approver));
      });
      admin.post("/auditors/tokens", async (req, reply) => {
        const b = parseInput(z.strictObject({ auditor: agentName }), req.body, "body");
        return reply.code(201).send(await deps.admin.createAuditorToken(b.auditor));
      });
      admin.post("/dashboard/links", async (req, reply) => {
        const b = parseInput(z.strictObject({ approver: agentName }), req.body, "body");
        return reply.code(201).send(await deps.admin.createDashboardLink(b.approver));
      });
      admin.post("/telegram/webhook", async () => deps.admin.setTelegramWebhook());
      admin.get("/access-requests", async (req) => {
        const q = parseInput(
          z.strictObject({ status: z.string().optional(), project: z.string().optional() }),
          req.query,
          "query",
        );
        return { access_requests: await deps.admin.listRequests(q) };
      });
      admin.get("/access-requests/:id", async (req) => {
        const p = parseInput(z.strictObject({ id: z.string() }), req.params, "params");
        return deps.admin.showRequest(p.id);
      });
      admin.post("/access-requests/:id/:verdict", async (req) => {
        const p = parseInput(
          z.strictObject({ id: z.string(), verdict: z.enum(["approve", "deny"], "must be approve or deny") }),
          req.params,
          "params",
        );
        const b = parseInput(
          z.strictObject({
            approver: agentName,
            ttl: safeText(64).optional(),
            reason: safeText(1000).optional(),
          }),
          req.body,
          "body",
        );
        return deps.admin.reviewRequest(p.id, b.approver, p.verdict, { ttl: b.ttl, reason: b.reason });
      });
      admin.get("/grants", async (req) => {
        const q = parseInput(
          z.strictObject({ project: z.string().optional(), all: z.enum(["true", "false"]).optional() }),
          req.query,
          "query",
        );
        return { grants: await deps.admin.listGrants({ project: q.project, all: q.all === "true" }) };
      });
      admin.post("/credentials", async (req, reply) => {
        const b = parseInput(CredentialBody, req.body, "body");
        const r = await deps.admin.setCredential(b.name, b.value);
        return reply.code(r.created ? 201 : 200).send(r);
      });
      admin.get("/credentials", async () => ({ credentials: await deps.admin.listCredentials() }));
      admin.post("/credentials/:name/delete", async (req) => {
        const p = parseInput(CredentialParams, req.params, "params");
        return deps.admin.deleteCredential(p.name);
      });
      admin.post("/grants/:id/revoke", async (req) => {
        const p = parseInput(z.strictObject({ id: z.string() }), req.params, "params");
        const b = parseInput(z.strictObject({ reason: safeText(1000).optional() }), req.body ?? {}, "body");
        return deps.admin.revokeGrant(p.id, b.reason);
      });
      admin.all("/*", async (req) => {
        throw new AppError("NOT_FOUND", `no admin route ${req.method} ${req.url.split("?")[0]}`);
      });
    },
    { prefix: "/v1/admin" },
  );
  return app;
}
