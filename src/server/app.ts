import type { FastifyInstance } from "fastify";
import type { A2AService } from "../a2a/a2a-service.js";
import { registerA2ARoutes } from "../a2a/routes.js";
import type { AdminOps } from "../admin/admin-service.js";
import { registerAdminRoutes } from "../admin/routes.js";
import type { TokenService } from "../agents/token-service.js";
import type { ApproverTokens } from "../butler/approver-tokens.js";
import type { Butler } from "../butler/butler-service.js";
import { registerButlerRoutes } from "../butler/routes.js";
import type { ApprovalChannel } from "../channels/channel.js";
import type { Clock } from "../clock.js";
import type { AuditDurability } from "../config.js";
import { type DashboardDeps, registerDashboard } from "../dashboard/routes.js";
import type { Db } from "../db/client.js";
import { RETRY_AFTER_SECONDS } from "../errors.js";
import type { Gateway } from "../gateway/gateway-service.js";
import { registerGatewayRoutes } from "../gateway/routes.js";
import { createFastify } from "../http/fastify.js";
import { collectRoutes } from "../http/route-doc.js";
import type { Logger } from "../logger.js";
import type { McpDeps } from "../mcp/mcp-server.js";
import { registerMcpRoutes } from "../mcp/routes.js";
import type { McpStreams } from "../mcp/streams.js";
import type { Metrics } from "../metrics.js";
import type { PolicyIndex } from "../policy/compile.js";
import type { ProviderGateway } from "../providers/provider-gateway.js";
import { registerProviderRoutes } from "../providers/routes.js";
import { PACKAGE_VERSION } from "../version.js";
import { registerOpenApiRoutes } from "./openapi-routes.js";

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
  /** Providers in the call path (operations, the transparent proxy and, with `policies`, MCP tools). */
  providers?: ProviderGateway;
  /** MCP (`/mcp`): the policy in force (each agent's tools), sessions' database and streams. */
  mcp?: {
    policies: { index(): PolicyIndex; ensureCurrent(project: string): Promise<boolean> };
    db: Db;
    clock: Clock;
    streams: McpStreams;
    /** The MCP servers behind Butler (their tools' pinned definitions). */
    upstreams?: McpDeps["upstreams"];
    /** How long a call that needs a person waits for the decision (MCP_APPROVAL_WAIT_SECONDS). */
    approvalWaitMs: number;
  };
  /** Approval channels; those with webhooks mount them here. */
  channels?: readonly ApprovalChannel[];
  /** The web dashboard. */
  dashboard?: Omit<DashboardDeps, "closing" | "log">;
  adminToken: string;
  /** A random id of this server process, so that the CLI can tell it is talking to the right one. */
  instanceId: string;
  /** Which decisions are answered before their audit line reaches the disk (reported by /healthz). */
  auditDurability: AuditDurability;
  /** Throws (with a reason) when the server should not receive traffic. */
  checkReady: () => Promise<void>;
  /**
   * The state of each part the server depends on (database, approval channels): `up`, or what is
   * wrong (`down`, `degraded`, `starting`, `unknown`). Must answer at once, without I/O.
   */
  components?: () => Record<string, string>;
}

/**
 * Builds the HTTP server (without listening): gateway, health, metrics and admin API, and their
 * description (`/openapi.json`, `/docs`). Every route must carry a description (`config.doc`): the
 * server does not start with one that has none.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = createFastify({
    log: deps.log,
    bodyLimitBytes: deps.bodyLimitBytes,
    trustProxy: deps.trustProxy,
  });
  const routes = collectRoutes(app);
  registerOpenApiRoutes(app, routes);

  const about = (summary: string, type = "application/json") => ({
    config: { doc: { tag: "about", summary, auth: [], responses: { 200: { description: "OK", type } } } },
  });
  // Liveness: the process answers. It is 200 while the process lives, whatever its parts say
  // (a restart would not bring the database or Slack back); the parts' states are for people.
  // `audit.durability` says whether an answer waits for its audit line to reach the disk.
  const audit = { durability: deps.auditDurability };
  app.get(
    "/healthz",
    about("Liveness: 200 while the process runs, with the state of each part and the audit durability"),
    async () => {
      const components = deps.components?.() ?? {};
      const degraded = Object.values(components).some((s) => s !== "up");
      return { status: degraded ? "degraded" : "ok", instance: deps.instanceId, components, audit };
    },
  );
  // Readiness: the server can decide (its database answers, within the database timeout).
  app.get(
    "/readyz",
    about("Readiness: 200 when the database answers, else 503 with Retry-After"),
    async (req, reply) => {
      try {
        await deps.checkReady();
        return { status: "ready" };
      } catch (e) {
        // The reason goes to the log only: a database error can name internal hosts and users.
        req.log.warn({ err: e }, "not ready");
        return reply
          .code(503)
          .header("retry-after", String(RETRY_AFTER_SECONDS))
          .send({ status: "not ready" });
      }
    },
  );
  app.get("/metrics", about("Prometheus metrics", "text/plain"), async (_req, reply) => {
    reply.header("content-type", deps.metrics.registry.contentType);
    return deps.metrics.registry.metrics();
  });

  registerGatewayRoutes(app, { gateway: deps.gateway, tokens: deps.tokens });

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
  if (deps.providers && deps.mcp)
    await registerMcpRoutes(app, {
      ...deps.mcp,
      providers: deps.providers,
      butler: deps.butler,
      tokens: deps.tokens,
      log: deps.log,
      version: PACKAGE_VERSION,
      bodyLimitBytes: deps.bodyLimitBytes,
    });
  for (const channel of deps.channels ?? []) await channel.mount?.(app);
  if (deps.dashboard) {
    const closing = new AbortController();
    app.addHook("preClose", async () => closing.abort());
    await registerDashboard(app, { ...deps.dashboard, closing: closing.signal, log: deps.log });
  }

  await registerAdminRoutes(app, { admin: deps.admin, adminToken: deps.adminToken });
  return app;
}
