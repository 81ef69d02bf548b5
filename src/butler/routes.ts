import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { AgentIdentity, TokenService } from "../agents/token-service.js";
import { REQUEST_STATUSES } from "../db/schema.js";
import { AppError } from "../errors.js";
import { bearerToken } from "../http/auth.js";
import type { RouteDoc } from "../http/route-doc.js";
import { parseInput, safeText } from "../http/validation.js";
import { type ApproverTokens, looksLikeApproverToken } from "./approver-tokens.js";
import type { Butler } from "./butler-service.js";
import { BreakGlassBody, CreateRequestBody, ttl } from "./request-schema.js";
import { agentView } from "./request-view.js";

const id = z
  .string()
  .regex(/^req_[a-z0-9]{16}$/, "must be an access request id such as req_0123456789abcdef");
const IdParams = z.strictObject({ id });
const GrantParams = z.strictObject({ id });
const ApproveBody = z.strictObject({ ttl: ttl.optional() });
const DenyBody = z.strictObject({ reason: safeText(1000).optional() });
const RevokeBody = z.strictObject({ reason: safeText(1000).optional() });
const ListQuery = z.strictObject({
  status: z.enum(REQUEST_STATUSES, `must be one of ${REQUEST_STATUSES.join(", ")}`).optional(),
  project: safeText(64).optional(),
});
const GrantsQuery = z.strictObject({
  project: safeText(64).optional(),
  all: z.enum(["true", "false"], "must be true or false").optional(),
});

const doc = (d: RouteDoc) => ({ config: { doc: d } });

/** Each route's description (see RouteDoc), as `config` for its options. */
const DOCS = {
  file: doc({
    tag: "access requests",
    summary: "File an access request (an agent asks a person for a grant)",
    description:
      "201 with the new request, or 200 with the pending request identical to it (`existing: true`), or 200 `already_allowed`.",
    auth: ["agent"],
    body: CreateRequestBody,
    responses: { 201: { description: "Filed" }, 200: { description: "Existing, or already allowed" } },
  }),
  list: doc({
    tag: "access requests",
    summary: "List the access requests of the approver's projects",
    auth: ["approver"],
    query: ListQuery,
  }),
  show: doc({
    tag: "access requests",
    summary: "One access request (an agent sees its own; an approver those of its projects)",
    auth: ["agent", "approver"],
    params: IdParams,
  }),
  cancel: doc({
    tag: "access requests",
    summary: "Cancel the agent's own pending request",
    auth: ["agent"],
    params: IdParams,
  }),
  approve: doc({
    tag: "access requests",
    summary: "Approve (optionally for a shorter TTL); two-person tiers need a second approver",
    auth: ["approver"],
    params: IdParams,
    body: ApproveBody,
    optionalBody: true,
  }),
  remember: doc({
    tag: "access requests",
    summary:
      "Make an approved grant a permanent rule of the policy file (as many approvers as the request needed; written to the file, or to a patch where the directory is read-only or kept in git)",
    auth: ["approver"],
    params: IdParams,
  }),
  breakGlass: doc({
    tag: "access requests",
    summary:
      "Break-glass: a person settings.break_glass names opens short emergency access for an agent at once, announced loudly, reviewed afterwards by a second person",
    auth: ["approver"],
    body: BreakGlassBody,
  }),
  reviewBreakGlass: doc({
    tag: "access requests",
    summary: "Review a break-glass (a second person: not the one who opened it)",
    auth: ["approver"],
    params: IdParams,
  }),
  deny: doc({
    tag: "access requests",
    summary: "Deny, with an optional reason the agent is told",
    auth: ["approver"],
    params: IdParams,
    body: DenyBody,
    optionalBody: true,
  }),
  grants: doc({
    tag: "access requests",
    summary: "Grants in the approver's projects (active ones unless all=true)",
    auth: ["approver"],
    query: GrantsQuery,
  }),
  revoke: doc({
    tag: "access requests",
    summary: "Revoke a grant at once",
    auth: ["approver"],
    params: GrantParams,
    body: RevokeBody,
    optionalBody: true,
  }),
};

export interface ButlerRouteDeps {
  butler: Butler;
  tokens: Pick<TokenService, "authenticate">;
  approverTokens: Pick<ApproverTokens, "authenticate">;
}

type Caller = { kind: "agent"; identity: AgentIdentity } | { kind: "approver"; approver: string };

/**
 * The access-request API. Agents file and read their own requests; approvers (with approver
 * tokens) list, decide and revoke. An agent token is refused wherever a decision is made, whatever
 * the body says: no agent can grant anything, to itself or anyone.
 */
export function registerButlerRoutes(app: FastifyInstance, deps: ButlerRouteDeps): void {
  const { butler } = deps;

  async function caller(req: FastifyRequest): Promise<Caller> {
    const token = bearerToken(req);
    if (!token)
      throw new AppError(
        "UNAUTHENTICATED",
        "send an agent's or an approver's token as Authorization: Bearer <token>",
      );
    if (looksLikeApproverToken(token)) {
      const a = await deps.approverTokens.authenticate(token);
      if (!a) throw new AppError("UNAUTHENTICATED", "the approver token is not valid (unknown or revoked)");
      return { kind: "approver", approver: a.approver };
    }
    const identity = await deps.tokens.authenticate(token);
    if (!identity)
      throw new AppError("UNAUTHENTICATED", "the token is not valid (unknown, malformed or revoked)");
    return { kind: "agent", identity };
  }

  async function agent(req: FastifyRequest): Promise<AgentIdentity> {
    const c = await caller(req);
    if (c.kind !== "agent") throw new AppError("FORBIDDEN", "this is an agent's call; use an agent token");
    return c.identity;
  }

  async function approver(req: FastifyRequest): Promise<string> {
    const c = await caller(req);
    if (c.kind !== "approver")
      throw new AppError(
        "FORBIDDEN",
        "agent tokens cannot decide access requests; this needs an approver's token",
      );
    return c.approver;
  }

  app.post("/v1/access-requests", DOCS.file, async (req, reply) => {
    const identity = await agent(req);
    const body = parseInput(CreateRequestBody, req.body, "body");
    const r = await butler.submit(identity, body);
    if (r.status === "already_allowed") return reply.code(200).send(r);
    return reply.code(r.status === "created" ? 201 : 200).send({
      status: r.request.status,
      existing: r.status === "existing",
      access_request: agentView(r.request),
    });
  });

  app.get("/v1/access-requests", DOCS.list, async (req) => {
    const who = await approver(req);
    const q = parseInput(ListQuery, req.query, "query");
    return { access_requests: await butler.list({ status: q.status, project: q.project, approver: who }) };
  });

  app.get("/v1/access-requests/:id", DOCS.show, async (req) => {
    const p = parseInput(IdParams, req.params, "params");
    const c = await caller(req);
    return c.kind === "agent"
      ? agentView(await butler.getForAgent(c.identity, p.id))
      : butler.getForApprover(c.approver, p.id);
  });

  app.post("/v1/access-requests/:id/cancel", DOCS.cancel, async (req) => {
    const identity = await agent(req);
    const p = parseInput(IdParams, req.params, "params");
    return { access_request: agentView(await butler.cancel(identity, p.id)) };
  });

  app.post("/v1/access-requests/:id/approve", DOCS.approve, async (req) => {
    const who = await approver(req);
    const p = parseInput(IdParams, req.params, "params");
    const b = parseInput(ApproveBody, req.body ?? {}, "body");
    const r = await butler.review({ approver: who, channel: "api" }, p.id, "approve", { ttl: b.ttl });
    return { outcome: r.outcome, access_request: r.request };
  });

  app.post("/v1/access-requests/:id/remember", DOCS.remember, async (req) => {
    const who = await approver(req);
    const p = parseInput(IdParams, req.params, "params");
    return butler.remember(who, p.id);
  });

  app.post("/v1/break-glass", DOCS.breakGlass, async (req, reply) => {
    const who = await approver(req);
    const b = parseInput(BreakGlassBody, req.body, "body");
    return reply.code(201).send(await butler.breakGlass(who, b));
  });

  app.post("/v1/break-glass/:id/review", DOCS.reviewBreakGlass, async (req) => {
    const who = await approver(req);
    const p = parseInput(IdParams, req.params, "params");
    return butler.reviewBreakGlass(who, p.id);
  });

  app.post("/v1/access-requests/:id/deny", DOCS.deny, async (req) => {
    const who = await approver(req);
    const p = parseInput(IdParams, req.params, "params");
    const b = parseInput(DenyBody, req.body ?? {}, "body");
    const r = await butler.review({ approver: who, channel: "api" }, p.id, "deny", { reason: b.reason });
    return { outcome: r.outcome, access_request: r.request };
  });

  app.get("/v1/grants", DOCS.grants, async (req) => {
    const who = await approver(req);
    const q = parseInput(GrantsQuery, req.query, "query");
    const projects = mine(who);
    return { grants: await butler.listGrants({ project: q.project, all: q.all === "true", projects }) };
  });

  app.delete("/v1/grants/:id", DOCS.revoke, async (req) => {
    const who = await approver(req);
    const p = parseInput(GrantParams, req.params, "params");
    const b = parseInput(RevokeBody, req.body ?? {}, "body");
    const project = await butler.grantProject(p.id);
    if (!mine(who).includes(project)) throw new AppError("NOT_FOUND", `no grant ${p.id} in your projects`);
    return butler.revokeGrant(p.id, `approver:${who}`, b.reason);
  });

  function mine(who: string): string[] {
    return butler.projectsOfApprover(who);
  }
}
