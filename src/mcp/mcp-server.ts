import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  CallToolResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
} from "@modelcontextprotocol/sdk/types.js";
import type { AgentIdentity } from "../agents/token-service.js";
import type { Butler } from "../butler/butler-service.js";
import { CreateRequestBody } from "../butler/request-schema.js";
import { asAppError } from "../errors.js";
import { safeText } from "../http/validation.js";
import type { Logger } from "../logger.js";
import type { PolicyIndex } from "../policy/compile.js";
import type { McpUpstreams } from "../providers/mcp-upstream.js";
import type { ProviderAnswer, ProviderGateway } from "../providers/provider-gateway.js";
import { providerTools, REQUEST_ACCESS_TOOL, toolTarget } from "./tools.js";

/**
 * Butler as an MCP server for one agent: `tools/list` gives the provider operations of the
 * agent's project as tools (tools.ts) and `butler_request_access`; `tools/call` runs a provider
 * tool through the same pipeline as `POST /v1/providers/…/operations/…` and the proxy (params
 * checked, the policy's decision, one-shot approvals, budgets, the credential, the upstream call,
 * both audit lines, tagged `via: mcp`). A DENY is a tool result with `isError` saying why and
 * what to do next, so that the model can act on it; a name that is no tool is a protocol error.
 */
export interface McpDeps {
  providers: Pick<ProviderGateway, "call" | "providers">;
  policies: { index(): PolicyIndex; ensureCurrent(project: string): Promise<boolean> };
  butler: Pick<Butler, "submit" | "getForAgent">;
  /** How long a call that needs a person waits for the decision (when the client asked for progress); 0: never. */
  approvalWaitMs: number;
  /** The MCP servers behind Butler: their tools' pinned definitions, read again when due. */
  upstreams?: Pick<McpUpstreams, "shown" | "refreshDue"> | undefined;
  /** How often a waiting call reads its request's state (any instance's decision counts); 1 s by default. */
  approvalPollMs?: number;
  log: Logger;
  version: string;
}

/** `_meta` keys a client may send with `tools/call`. */
const META_REASON = "butler/reason";
const META_IDEMPOTENCY_KEY = "butler/idempotency_key";
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
const REASON = safeText(2000);

const REQUEST_ACCESS = {
  name: REQUEST_ACCESS_TOOL,
  title: "Ask a person for access",
  description:
    "Ask for access after a denial: name the denied call's event id (denial_event_id, from the denied tool result) and say why you need it. Butler proposes the smallest policy change that allows exactly that call, and a person approves or denies it in chat or on the dashboard; once approved, make the same call again. For a call that said approval_required, the request was filed already: follow it instead.",
  inputSchema: {
    type: "object" as const,
    properties: {
      denial_event_id: {
        type: "string",
        pattern: "^evt_[a-z0-9]{16}$",
        description: "The event id of the denial (event_id in the denied tool result)",
      },
      reason: {
        type: "string",
        minLength: 1,
        maxLength: 2000,
        description: "Why you need this, for the person who decides",
      },
      ttl: {
        type: "string",
        description: "How long the grant should last, such as 1h (at most the project's maximum)",
      },
    },
    required: ["denial_event_id", "reason"],
    additionalProperties: false,
  },
  annotations: {
    title: "Ask a person for access",
    readOnlyHint: false,
    destructiveHint: false,
    idempotentHint: true,
    openWorldHint: false,
  },
};

/**
 * A new MCP server for one request of `identity` (see routes.ts). `session` names the MCP session
 * the request belongs to, if any, for per-session budgets (never the session id itself).
 */
export function mcpServerFor(deps: McpDeps, identity: AgentIdentity, session?: string): Server {
  const server = new Server(
    { name: "butler", title: "Butler", version: deps.version },
    {
      capabilities: { tools: { listChanged: true } },
      instructions:
        "Butler governs these tools: every call is decided by the project's policy and written to an audit log. A denied call returns isError with the reason and its event id; call butler_request_access with that id and your reason to ask a person, then make the same call again once approved.",
    },
  );
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    try {
      // Told of a change (list_changed) by another instance, this one may not have read it yet.
      await deps.policies.ensureCurrent(identity.project);
      await deps.upstreams?.refreshDue();
      const project = deps.policies.index().projects.get(identity.project);
      return {
        tools: [
          ...providerTools(deps.providers.providers, project, identity.agent, deps.upstreams?.shown),
          REQUEST_ACCESS,
        ],
      };
    } catch (e) {
      // The SDK would send the error's own message (a database error's text) to the agent.
      deps.log.error({ err: e }, "MCP tools/list failed");
      throw new McpError(ErrorCode.InternalError, "internal error: the tools could not be listed; try again");
    }
  });
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const { name, arguments: args, _meta: meta } = request.params;
    try {
      if (name === REQUEST_ACCESS_TOOL) return await requestAccess(deps, identity, args ?? {});
      const target = toolTarget(deps.providers.providers, name);
      if (!target)
        throw new McpError(
          ErrorCode.InvalidParams,
          `unknown tool '${clip(name)}': tools/list names the tools`,
        );
      const key = meta?.[META_IDEMPOTENCY_KEY];
      if (key !== undefined && (typeof key !== "string" || !IDEMPOTENCY_KEY.test(key)))
        return toolError(`_meta.${META_IDEMPOTENCY_KEY} must be 1 to 255 printable ASCII characters`, {
          code: "INVALID_INPUT",
        });
      const reason = meta?.[META_REASON];
      // Checked as REST checks its reason field and the proxy its X-Butler-Reason header.
      if (reason !== undefined && !REASON.safeParse(reason).success)
        return toolError(
          `_meta.${META_REASON} must be at most 2000 characters of text without NUL characters`,
          {
            code: "INVALID_INPUT",
          },
        );
      const call = {
        provider: target.spec.name,
        operation: target.op.name,
        params: args ?? {},
        via: "mcp",
        idempotencyKey: key as string | undefined,
        reason: reason as string | undefined,
        accept: "application/json",
        session,
      };
      const upstream = target.spec.mcp !== undefined;
      const answer = await deps.providers.call(identity, call);
      const pending = pendingApproval(answer);
      const progressToken = meta?.progressToken;
      if (pending === undefined || progressToken === undefined || deps.approvalWaitMs <= 0)
        return resultOf(answer, undefined, upstream);
      // A person must approve this call: wait for the decision, telling the client as it waits.
      let decided: string;
      try {
        decided = await waitForDecision(
          deps,
          identity,
          pending,
          (progress, message) =>
            extra.sendNotification({
              method: "notifications/progress",
              params: { progressToken, progress, message },
            }),
          extra.signal,
        );
      } catch (e) {
        // The request was filed; whatever went wrong while following it, the agent keeps its id.
        deps.log.error({ err: e, request: pending }, "an MCP call could not follow its request");
        return resultOf(answer, FOLLOW_FAILED_TEXT);
      }
      // A client that cancelled or went away no longer wants the call: it is not made.
      if (extra.signal.aborted) return resultOf(answer, WAITED_TEXT(0));
      if (decided === "approved")
        return resultOf(await deps.providers.call(identity, call), undefined, upstream);
      return resultOf(
        answer,
        decided === "pending" ? WAITED_TEXT(deps.approvalWaitMs) : DECIDED_TEXT(decided),
      );
    } catch (e) {
      if (e instanceof McpError) throw e;
      const app = asAppError(e);
      if (app && app.code !== "INTERNAL") return toolError(app.message, { code: app.code });
      deps.log.error({ err: e, tool: name }, "an MCP tool call failed");
      return toolError("Butler could not complete the call (internal error); nothing was decided for it");
    }
  });
  return server;
}

/** The one-shot request a DENY filed (approval_required), if this answer is one. */
function pendingApproval(answer: ProviderAnswer): string | undefined {
  if (answer.status !== 403) return undefined;
  try {
    const body = JSON.parse(answer.body.toString("utf8")) as {
      code?: string;
      approval_required?: { request_id?: unknown; status?: unknown };
    };
    const id = body.approval_required?.request_id;
    return body.code === "approval_required" &&
      typeof id === "string" &&
      body.approval_required?.status === "pending"
      ? id
      : undefined;
  } catch {
    return undefined;
  }
}

const WAITED_TEXT = (ms: number) =>
  `No one decided within ${Math.round(ms / 1000)} s; the request stays open: make the same call again once it is approved.`;
const FOLLOW_FAILED_TEXT =
  "Butler could not follow the request (see approval_required); it stays open: make the same call again once it is approved.";
const DECIDED_TEXT = (status: string) => `The request was ${status}: the call was not made.`;

/**
 * Waits for a person's decision on the request, reading its state every `approvalPollMs` (so an
 * approval through any instance or channel counts), with a progress notification each time, until
 * it is decided, `approvalWaitMs` have passed, or the client goes away. Its status then.
 */
async function waitForDecision(
  deps: McpDeps,
  identity: AgentIdentity,
  requestId: string,
  progress: (n: number, message: string) => Promise<void>,
  signal: AbortSignal,
): Promise<string> {
  const pollMs = deps.approvalPollMs ?? 1000;
  const deadline = performance.now() + deps.approvalWaitMs;
  for (let n = 1; ; n++) {
    await progress(n, `waiting for a person to decide ${requestId}`);
    await new Promise<void>((resolve) => {
      // Cancelled while the progress was being sent: no wait at all (an aborted signal fires no more).
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, Math.min(pollMs, deadline - performance.now())));
      signal.addEventListener("abort", done, { once: true });
    });
    const status = (await deps.butler.getForAgent(identity, requestId)).status;
    if (status !== "pending" || signal.aborted || performance.now() >= deadline) return status;
  }
}

/** Files the access request a denied call asks for (the same scoping as POST /v1/access-requests). */
async function requestAccess(
  deps: McpDeps,
  identity: AgentIdentity,
  args: Record<string, unknown>,
): Promise<CallToolResult> {
  const parsed = CreateRequestBody.safeParse(args);
  if (!parsed.success)
    return toolError(
      `the arguments are not valid: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(arguments)"} ${i.message}`).join("; ")}`,
      { code: "INVALID_INPUT" },
    );
  const r = await deps.butler.submit(identity, parsed.data);
  if (r.status === "already_allowed")
    return jsonResult({ ...r, next: "the call is allowed now: make it again" });
  return jsonResult({
    status: r.request.status,
    existing: r.status === "existing",
    access_request: r.request,
    next: "a person decides; once approved, make the same call again (GET /v1/access-requests/<id> shows the request)",
  });
}

/**
 * The provider's answer as a tool result: its JSON body (an upstream MCP server's own tool result,
 * `upstream`), or why the call was refused (and `note`).
 */
function resultOf(answer: ProviderAnswer, note?: string, upstream = false): CallToolResult {
  const text = answer.body.toString("utf8");
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const meta = { "butler/event_id": answer.eventId, "butler/http_status": answer.status };
  if (upstream && answer.status >= 200 && answer.status < 300) {
    const r = CallToolResultSchema.safeParse(body);
    if (r.success) return { ...r.data, _meta: { ...r.data._meta, ...meta } };
  }
  if (answer.status >= 200 && answer.status < 300)
    return {
      content: [{ type: "text", text }],
      ...(isObject(body) ? { structuredContent: body } : {}),
      _meta: meta,
    };
  if ((answer.status === 403 || answer.status === 429) && isObject(body) && body.decision === "DENY") {
    const d = body as { reason?: string; code?: string; event_id?: string; approval_required?: unknown };
    const next =
      note ??
      (d.approval_required
        ? "A person must approve this exact call; the request was filed (see approval_required). Once approved, make the same call again."
        : `To ask for access, call ${REQUEST_ACCESS_TOOL} with denial_event_id "${d.event_id}" and your reason.`);
    return {
      isError: true,
      content: [
        { type: "text", text: `Denied by Butler: ${d.reason ?? "no reason given"}\n${next}` },
        { type: "text", text },
      ],
      structuredContent: body,
      _meta: meta,
    };
  }
  return {
    isError: true,
    content: [{ type: "text", text: `The call ended with HTTP ${answer.status}: ${text.slice(0, 4000)}` }],
    ...(isObject(body) ? { structuredContent: body } : {}),
    _meta: meta,
  };
}

function jsonResult(value: Record<string, unknown>): CallToolResult {
  return { content: [{ type: "text", text: JSON.stringify(value) }], structuredContent: value };
}

function toolError(message: string, extra: Record<string, unknown> = {}): CallToolResult {
  return {
    isError: true,
    content: [{ type: "text", text: message }],
    structuredContent: { error: message, ...extra },
  };
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A name as quoted back in an error: at most 100 characters. */
const clip = (s: string) => (s.length > 100 ? `${s.slice(0, 100)}…` : s);
