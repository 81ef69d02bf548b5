import { z } from "zod";
import { BreakGlassBody } from "../butler/request-schema.js";
import { safeText, storable } from "../http/validation.js";
import { agentName, projectName } from "../policy/schema.js";
import { parseTimestamp } from "../policy/time.js";
import type { AdminOps } from "./admin-service.js";

/**
 * The admin API as one table: each admin operation, the HTTP method and path that carry it, the
 * schemas its input is checked with, and how its arguments and result travel. The server's routes
 * (`admin/routes.ts`) and the CLI's client (`cli/http-admin.ts`) are both built from it, so the
 * two cannot drift apart.
 */

/** Where the admin API is mounted. */
export const ADMIN_PREFIX = "/v1/admin";

export type AdminOp = keyof AdminOps;
export type AdminMethod = "GET" | "POST" | "PUT";

/** The parts of an HTTP request that carry an operation's arguments (before encoding). */
export interface WireRequest {
  params?: Record<string, string>;
  query?: Record<string, string | undefined>;
  body?: unknown;
}

type Out<S> = S extends z.ZodType ? z.output<S> : undefined;
type Args<K extends AdminOp> = Parameters<AdminOps[K]>;
type Result<K extends AdminOp> = Awaited<ReturnType<AdminOps[K]>>;

interface RouteSpec<K extends AdminOp, P, Q, B> {
  op: K;
  /** What the route does, in a few words (its line in /openapi.json and /docs). */
  summary: string;
  method: AdminMethod;
  /** Under ADMIN_PREFIX; `:name` segments are path parameters. */
  path: string;
  params?: P;
  query?: Q;
  body?: B;
  /** A missing body reads as `{}` (every field of the body is optional). */
  optionalBody?: true;
  /** Server side: the operation's arguments from the checked input. */
  args(input: { params: Out<P>; query: Out<Q>; body: Out<B> }): Args<K>;
  /** Client side: the request that carries the operation's arguments. */
  request(...args: Args<K>): WireRequest;
  /** The status of a success (200 when not given). */
  status?: number | ((result: Result<K>) => number);
  /** The response body made from the result (the result itself when not given)... */
  reply?(result: Result<K>): unknown;
  /** ...and the result read back from it by the client. */
  unwrap?(body: unknown): Result<K>;
  /** The result is a stream of lines, sent as JSON lines (NDJSON). */
  ndjson?: true;
}

/** One row of the table, with its types erased (what the server and the client iterate over). */
export interface AdminRoute {
  op: AdminOp;
  summary: string;
  method: AdminMethod;
  path: string;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  optionalBody?: true;
  args(input: { params: unknown; query: unknown; body: unknown }): unknown[];
  request(...args: unknown[]): WireRequest;
  status?: number | ((result: unknown) => number);
  reply?(result: unknown): unknown;
  unwrap?(body: unknown): unknown;
  ndjson?: true;
}

function route<
  K extends AdminOp,
  P extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
>(spec: RouteSpec<K, P, Q, B>): AdminRoute {
  return spec as unknown as AdminRoute;
}

/** A result sent as `{ [key]: result }`. */
function wrappedIn<K extends AdminOp>(key: string) {
  return {
    reply: (result: Result<K>) => ({ [key]: result }),
    unwrap: (body: unknown) => (body as Record<string, Result<K>>)[key] as Result<K>,
  };
}

/** `tokenId` → `token_id`: HTTP JSON names are snake_case, as the audit log's are. */
const snakeName = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
/** `token_id` → `tokenId`. */
const camelName = (k: string) => k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const renamed = (v: unknown, name: (k: string) => string) =>
  Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [name(k), x]));

/**
 * A result whose field names are camelCase in TypeScript (a flat record, or a list of them under
 * `key`) sent with snake_case names, and read back by the client as it was.
 */
function snakeCase<K extends AdminOp>(key?: string) {
  return {
    reply: (result: Result<K>) =>
      key ? { [key]: (result as unknown[]).map((r) => renamed(r, snakeName)) } : renamed(result, snakeName),
    unwrap: (body: unknown) =>
      (key
        ? ((body as Record<string, unknown[]>)[key] ?? []).map((r) => renamed(r, camelName))
        : renamed(body, camelName)) as Result<K>,
  };
}

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
const timestampText = z
  .string()
  .refine((s) => parseTimestamp(s).ok, "must be a timestamp with a time zone, e.g. 2026-05-01T00:00:00Z");
const AtQuery = z.strictObject({ at: timestampText.optional() });
const CheckBody = z.strictObject({
  agent: agentName,
  action: z.string().min(1).max(256),
  resource: z.string().max(2048).optional(),
  branch: z.string().max(256).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
  at: timestampText.optional(),
});
/** A timestamp the schema has checked, as a Date. */
const dateOf = (s: string | undefined) => {
  const t = s === undefined ? undefined : parseTimestamp(s);
  return t?.ok ? new Date(t.value) : undefined;
};
const AdminBreakGlassBody = BreakGlassBody.extend({ person: agentName });
const SimulateBody = z.strictObject({
  yaml: z
    .string()
    .max(1024 * 1024, "is larger than 1 MiB")
    .refine(storable, "must be text without NUL characters or unpaired surrogates"),
  file: z.string().max(256).refine(storable, "must be text").optional(),
  since: z.string().max(64).optional(),
});
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
const ApproverBody = z.strictObject({ approver: agentName });
const IdParams = z.strictObject({ id: z.string() });
const ReviewParams = z.strictObject({
  id: z.string(),
  verdict: z.enum(["approve", "deny"], "must be approve or deny"),
});
const ReviewBody = z.strictObject({
  approver: agentName,
  ttl: safeText(64).optional(),
  reason: safeText(1000).optional(),
});

/** Every admin operation, in the order the README lists them. */
export const ADMIN_ROUTES: readonly AdminRoute[] = [
  route({
    op: "createAgentToken",
    summary: "Create an agent token (shown once)",
    method: "POST",
    path: "/agents",
    body: AgentBody,
    status: 201,
    args: ({ body }) => [body.agent, body.project],
    request: (agent, project) => ({ body: { agent, project } }),
    ...snakeCase<"createAgentToken">(),
  }),
  route({
    op: "listAgentTokens",
    summary: "List agent tokens (never the tokens themselves)",
    method: "GET",
    path: "/agents",
    query: ListQuery,
    args: ({ query }) => [query.project],
    request: (project) => ({ query: { project } }),
    ...snakeCase<"listAgentTokens">("tokens"),
  }),
  route({
    op: "revokeAgentTokens",
    summary: "Revoke an agent's tokens (one, with token_id, or all of them)",
    method: "POST",
    path: "/agents/revoke",
    body: RevokeBody,
    args: ({ body }) => [
      { agent: body.agent, project: body.project, ...(body.token_id ? { tokenId: body.token_id } : {}) },
    ],
    request: (sel) => ({ body: { agent: sel.agent, project: sel.project, token_id: sel.tokenId } }),
    ...wrappedIn<"revokeAgentTokens">("revoked"),
  }),
  route({
    op: "showPolicy",
    summary: "The policy in force for a project",
    method: "GET",
    path: "/policies/:project",
    params: ProjectParams,
    query: AtQuery,
    args: ({ params, query }) => [params.project, dateOf(query.at)],
    request: (project, at) => ({ params: { project }, query: at ? { at: at.toISOString() } : {} }),
    ...snakeCase<"showPolicy">(),
  }),
  route({
    op: "checkPolicy",
    summary: "Decide one call by the policy in force at a moment, from the stored revisions",
    method: "POST",
    path: "/policies/:project/check",
    params: ProjectParams,
    body: CheckBody,
    args: ({ params, body }) => {
      const { at, ...call } = body;
      return [params.project, call, dateOf(at)];
    },
    request: (project, call, at) => ({
      params: { project },
      body: { ...call, ...(at ? { at: at.toISOString() } : {}) },
    }),
  }),
  route({
    op: "policyHistory",
    summary: "A project's policy revisions",
    method: "GET",
    path: "/policies/:project/revisions",
    params: ProjectParams,
    args: ({ params }) => [params.project],
    request: (project) => ({ params: { project } }),
    ...snakeCase<"policyHistory">("revisions"),
  }),
  route({
    op: "policyRevision",
    summary: "One policy revision, with its YAML",
    method: "GET",
    path: "/policies/:project/revisions/:revision",
    params: RevisionParams,
    args: ({ params }) => [params.project, params.revision],
    request: (project, revision) => ({ params: { project, revision: String(revision) } }),
    ...snakeCase<"policyRevision">(),
  }),
  route({
    op: "simulatePolicy",
    summary: "What a policy file would have allowed or denied over the audited calls",
    method: "POST",
    path: "/policies/:project/simulate",
    params: ProjectParams,
    body: SimulateBody,
    args: ({ params, body }) => [params.project, body],
    request: (project, input) => ({ params: { project }, body: input }),
  }),
  route({
    op: "reloadPolicies",
    summary: "Import the policies directory now",
    method: "POST",
    path: "/policies/reload",
    args: () => [],
    request: () => ({}),
  }),
  route({
    op: "verifyAudit",
    summary: "Verify the audit log's hash chain",
    method: "GET",
    path: "/audit/verify",
    args: () => [],
    request: () => ({}),
    ...snakeCase<"verifyAudit">(),
  }),
  route({
    op: "exportAudit",
    summary: "Export the audit log as JSON lines",
    method: "GET",
    path: "/audit/export",
    query: ExportQuery,
    ndjson: true,
    args: ({ query }) => [
      {
        agent: query.agent,
        project: query.project,
        since: query.since ? new Date((parseTimestamp(query.since) as { value: number }).value) : undefined,
      },
    ],
    request: (f) => ({ query: { agent: f.agent, project: f.project, since: f.since?.toISOString() } }),
  }),
  route({
    op: "migrate",
    summary: "Apply database migrations",
    method: "POST",
    path: "/db/migrate",
    args: () => [],
    request: () => ({}),
    reply: () => ({ migrated: true }),
    unwrap: () => undefined,
  }),
  route({
    op: "createApproverToken",
    summary: "Create an approver token (shown once)",
    method: "POST",
    path: "/approvers/tokens",
    body: ApproverBody,
    status: 201,
    args: ({ body }) => [body.approver],
    request: (approver) => ({ body: { approver } }),
  }),
  route({
    op: "createTelegramLink",
    summary: "A one-time Telegram link that binds an account to an approver",
    method: "POST",
    path: "/approvers/telegram-link",
    body: ApproverBody,
    status: 201,
    args: ({ body }) => [body.approver],
    request: (approver) => ({ body: { approver } }),
  }),
  route({
    op: "createAuditorToken",
    summary: "Create an auditor token (reads every project in the dashboard)",
    method: "POST",
    path: "/auditors/tokens",
    body: z.strictObject({ auditor: agentName }),
    status: 201,
    args: ({ body }) => [body.auditor],
    request: (auditor) => ({ body: { auditor } }),
  }),
  route({
    op: "createDashboardLink",
    summary: "A one-time link that signs an approver in to the dashboard",
    method: "POST",
    path: "/dashboard/links",
    body: ApproverBody,
    status: 201,
    args: ({ body }) => [body.approver],
    request: (approver) => ({ body: { approver } }),
  }),
  route({
    op: "setTelegramWebhook",
    summary: "Register this server's Telegram webhook with Telegram",
    method: "POST",
    path: "/telegram/webhook",
    args: () => [],
    request: () => ({}),
  }),
  route({
    op: "listRequests",
    summary: "List access requests (all projects)",
    method: "GET",
    path: "/access-requests",
    query: z.strictObject({ status: z.string().optional(), project: z.string().optional() }),
    args: ({ query }) => [query],
    request: (f) => ({ query: { status: f.status, project: f.project } }),
    ...wrappedIn<"listRequests">("access_requests"),
  }),
  route({
    op: "showRequest",
    summary: "One access request",
    method: "GET",
    path: "/access-requests/:id",
    params: IdParams,
    args: ({ params }) => [params.id],
    request: (id) => ({ params: { id } }),
  }),
  route({
    op: "breakGlass",
    summary: "Break-glass in a named person's name: short emergency access for an agent, at once",
    method: "POST",
    path: "/break-glass",
    body: AdminBreakGlassBody,
    status: 201,
    args: ({ body }) => {
      const { person, ...input } = body;
      return [person, input];
    },
    request: (person, input) => ({ body: { person, ...input } }),
  }),
  route({
    op: "rememberRequest",
    summary: "Make an approved grant a permanent rule of the policy file, in an approver's name",
    method: "POST",
    path: "/access-requests/:id/remember",
    params: IdParams,
    body: ApproverBody,
    args: ({ params, body }) => [params.id, body.approver],
    request: (id, approver) => ({ params: { id }, body: { approver } }),
  }),
  route({
    op: "reviewRequest",
    summary: "Approve or deny an access request in an approver's name",
    method: "POST",
    path: "/access-requests/:id/:verdict",
    params: ReviewParams,
    body: ReviewBody,
    args: ({ params, body }) => [
      params.id,
      body.approver,
      params.verdict,
      { ttl: body.ttl, reason: body.reason },
    ],
    request: (id, approver, verdict, opts) => ({
      params: { id, verdict },
      body: { approver, ttl: opts.ttl, reason: opts.reason },
    }),
  }),
  route({
    op: "listGrants",
    summary: "List grants (active ones unless all=true)",
    method: "GET",
    path: "/grants",
    query: z.strictObject({ project: z.string().optional(), all: z.enum(["true", "false"]).optional() }),
    args: ({ query }) => [{ project: query.project, all: query.all === "true" }],
    request: (f) => ({ query: { project: f.project, all: f.all ? "true" : undefined } }),
    ...wrappedIn<"listGrants">("grants"),
  }),
  route({
    op: "revokeGrant",
    summary: "Revoke a grant",
    method: "POST",
    path: "/grants/:id/revoke",
    params: IdParams,
    body: z.strictObject({ reason: safeText(1000).optional() }),
    optionalBody: true,
    args: ({ params, body }) => [params.id, body.reason],
    request: (id, reason) => ({ params: { id }, body: { reason } }),
  }),
  route({
    op: "setCredential",
    summary: "Store or replace a provider credential (encrypted; never shown again)",
    method: "POST",
    path: "/credentials",
    body: CredentialBody,
    status: (r) => (r.created ? 201 : 200),
    args: ({ body }) => [body.name, body.value],
    request: (name, value) => ({ body: { name, value } }),
  }),
  route({
    op: "listCredentials",
    summary: "List provider credentials (names, never values)",
    method: "GET",
    path: "/credentials",
    args: () => [],
    request: () => ({}),
    ...wrappedIn<"listCredentials">("credentials"),
  }),
  route({
    op: "deleteCredential",
    summary: "Delete a provider credential",
    method: "POST",
    path: "/credentials/:name/delete",
    params: CredentialParams,
    args: ({ params }) => [params.name],
    request: (name) => ({ params: { name } }),
  }),
  route({
    op: "setPact",
    summary:
      "Set an agent's behavioural pact (a new revision, audited), or with pact null hand it back to the policy",
    method: "PUT",
    path: "/agents/:agent/pact",
    params: z.strictObject({ agent: z.string().max(128) }),
    body: z.strictObject({
      project: z.string().max(64),
      pact: z.union([z.record(z.string(), z.unknown()), z.null()]),
    }),
    args: ({ params, body }) => [params.agent, body.project, body.pact],
    request: (agent, project, pact) => ({ params: { agent }, body: { project, pact } }),
  }),
  route({
    op: "agentHealth",
    summary: "An agent's pact and health (its pact violations of the last 30 days)",
    method: "GET",
    path: "/agents/:agent/health",
    params: z.strictObject({ agent: z.string().max(128) }),
    query: z.strictObject({ project: z.string().max(64) }),
    args: ({ params, query }) => [params.agent, query.project],
    request: (agent, project) => ({ params: { agent }, query: { project } }),
  }),
  route({
    op: "listMcpTools",
    summary:
      "List the pinned tool definitions of the MCP servers behind Butler, and changes waiting for approval",
    method: "GET",
    path: "/mcp-servers/tools",
    query: z.strictObject({ server: z.string().max(64).optional() }),
    args: ({ query }) => [query.server],
    request: (server) => ({ query: { server } }),
    ...wrappedIn<"listMcpTools">("tools"),
  }),
  route({
    op: "approveMcpTool",
    summary: "Approve a changed MCP tool definition (by the hash reviewed): it is pinned and callable again",
    method: "POST",
    path: "/mcp-servers/:server/tools/:tool/approve",
    params: z.strictObject({ server: z.string().max(64), tool: z.string().max(64) }),
    body: z.strictObject({ hash: z.string().max(64) }),
    args: ({ params, body }) => [params.server, params.tool, body.hash],
    request: (server, tool, hash) => ({ params: { server, tool }, body: { hash } }),
  }),
];

/** The path of a request: path parameters filled in (encoded) and the query appended. */
export function wirePath(route: Pick<AdminRoute, "path">, req: WireRequest): string {
  const path = route.path.replace(/:([a-z]+)/g, (_, name: string) => {
    const v = req.params?.[name];
    if (v === undefined) throw new Error(`admin route ${route.path}: no value for :${name}`);
    return encodeURIComponent(v);
  });
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) q.set(k, v);
  const t = q.toString();
  return t ? `${path}?${t}` : path;
}
