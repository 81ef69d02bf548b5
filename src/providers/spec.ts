import { z } from "zod";
import type { Result } from "../result.js";
import { type FileIssue, type FileSource, parseYamlFile, type Report } from "../yaml-file.js";
import type { McpUpstreamSpec } from "./mcp-server-spec.js";

/**
 * Provider specs (`providers/*.yaml`): the API surface of one upstream service, as data. One
 * generic HTTP adapter calls any provider from its spec; the policy sees each operation as an
 * action on a resource. Pure: parsing and checking only.
 */

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "must be lower-case letters, digits, _ and - (for example stripe)");
const opName = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,63}$/, "must be snake_case letters and digits (for example list_customers)");
const groupName = z
  .string()
  .regex(
    /^[a-z][a-z0-9_.-]{0,63}$/,
    "must be lower-case letters, digits and . _ - (for example payments.refund)",
  );
const envName = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{0,127}$/, "must be an environment variable name such as STRIPE_API_KEY");
const paramPath = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/,
    "must be a parameter name or dotted path such as amount or receiver.account_id",
  );
const httpsUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === "https:" || u.protocol === "http:") && !u.username && !u.password;
  } catch {
    return false;
  }
}, "must be an http(s) URL without user name or password");

export const authShape = {
  type: z.enum(["bearer", "basic", "header"], "must be bearer, basic or header"),
  /** Where the credential comes from: an environment variable of that name, else the vault. */
  credential: envName,
  /** For `header`: the header to set (for example X-API-Key). */
  header: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9-]{0,63}$/, "must be an HTTP header name")
    .optional(),
  /** For `bearer`: the word before the token (default Bearer). */
  prefix: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9_-]{0,31}$/, "must be one word")
    .optional(),
};

export const groupShape = {
  default: z.enum(["allow", "deny"], "must be allow or deny"),
  /** With `allow`: only agents holding one of these roles (otherwise denied like `deny`). */
  roles: z.array(z.string().min(1)).optional(),
  /**
   * `read`: the group's operations only read (each a GET that moves no money), so a call's
   * decision line may be committed together with its outcome line after the provider answered.
   * Default `write`: the decision line is committed before the call goes out.
   */
  kind: z.enum(["read", "write"], "must be read or write").optional(),
  description: z.string().max(500).optional(),
};

export const constraintDocShape = {
  name: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, "must be snake_case"),
  type: z.enum(
    ["int", "number", "string", "string_list", "item_list"],
    "must be int, number, string, string_list or item_list",
  ),
  param_field: paramPath,
  description: z.string().max(500).optional(),
};

export const paramShape = {
  type: z.enum(
    ["string", "integer", "number", "boolean", "object", "array"],
    "must be string, integer, number, boolean, object or array",
  ),
  required: z.boolean("must be true or false").optional(),
  description: z.string().max(500).optional(),
};

export const operationShape = {
  name: opName,
  op_group: groupName,
  method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE"], "must be GET, POST, PUT, PATCH or DELETE"),
  /** Path under api_base_url, with `{param}` placeholders filled from the call's params. */
  endpoint: z
    .string()
    .regex(/^\/[A-Za-z0-9_.~/{}-]*$/, "must be a path starting with / (placeholders as {name})"),
  /** The action the policy sees, default `<provider>:<operation>`; may use {param} placeholders. */
  action: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]*:[A-Za-z0-9_.:/{}-]+$/, "must be service:verb such as stripe:charges:read")
    .optional(),
  /** The resource the policy sees; may use {param} placeholders. */
  resource: z.string().regex(/^\S+$/, "must not contain whitespace").optional(),
  /** How params travel: query string, JSON body or form body (default: query for GET and DELETE, else the provider's). */
  encoding: z.enum(["query", "json", "form"], "must be query, json or form").optional(),
  description: z.string().max(500).optional(),
  /** Parameters the operation takes (checked before anything else); others are passed through. */
  params: z.record(paramPath, z.strictObject(paramShape)).optional(),
  /** Parameters a policy may constrain (documentation for policy authors). */
  constraints: z.array(z.strictObject(constraintDocShape)).optional(),
  /** Upstream timeout for this operation. */
  timeout_ms: z.number().int().min(100).max(300_000).optional(),
  /** `each_call`: a person approves every call of this operation, once per call (one-shot). */
  approval: z.enum(["each_call"], "must be each_call (leave it out when no person is needed)").optional(),
  /** For operations that move money: where the amount (minor units) and its currency are; budgets count it. */
  amount: z
    .strictObject({
      field: paramPath,
      currency_field: paramPath.optional(),
      /** A fixed currency, when the operation has no currency parameter. */
      currency: z
        .string()
        .regex(/^[A-Za-z]{3}$/, "must be a three-letter currency code")
        .optional(),
    })
    .optional(),
};

export const reactionShape = {
  name: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, "must be snake_case"),
  /** Which events: the event's type, and optionally a field whose value must be in a list. */
  when: z.strictObject({
    event: z.string().min(1).max(128),
    field: paramPath.optional(),
    in: z
      .array(z.union([z.string(), z.number()]))
      .min(1)
      .optional(),
    /** Only while the event's agent (webhooks.subject) drifts at least this much (with this event counted). */
    drift: z.enum(["minor", "major"], "must be minor or major").optional(),
    /** Only while the event's agent's trust score is below this (after this event). */
    trust_below: z.number().int().min(1).max(1000).optional(),
    /** Only when the event breaks its agent's pact (a merchant category outside it, say). */
    pact_violated: z.boolean().optional(),
  }),
  /** The operation to call, through the same pipeline; `{path.in.event}` fills a param. */
  call: z.strictObject({
    operation: opName,
    params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  }),
  /** Who acts: an agent of a project, whose policy must allow the call like any other. */
  actor: z.strictObject({ project: z.string().min(1).max(64), agent: z.string().min(1).max(128) }),
};

/** Which agent an event is about: the resource it names, matched against pacts' `resources`. */
export const subjectShape = {
  /** Only these event types are payments about the resource (default: every event that names one). */
  events: z.array(z.string().min(1).max(128)).min(1, "must list at least one event type").optional(),
  /** The resource, with `{path.in.event}` filled from the event (revolut.com/cards/{data.card_id}). */
  resource: z.string().min(1).max(300),
  /** Where the event holds a card payment's merchant category code (MCC). */
  merchant_category: paramPath.optional(),
  /** Where the event holds the amount (minor units) and its currency. */
  amount: z.strictObject({ field: paramPath, currency_field: paramPath }).optional(),
};

export const webhookShape = {
  /** How the provider signs its webhooks. */
  scheme: z.enum(["stripe", "revolut"], "must be stripe or revolut"),
  /** The environment variable (or vault entry) holding the signing secret. */
  secret: envName,
  /** How old (or how far in the future) a signed timestamp may be. */
  tolerance_seconds: z.number().int().min(1).max(3600).optional(),
  /** Calls made in answer to events (for example: freeze a card used at a blocked merchant). */
  reactions: z.array(z.strictObject(reactionShape)).optional(),
  /** Which agent's behaviour an event is (pact, drift, trust): the owner of the resource it names. */
  subject: z.strictObject(subjectShape).optional(),
};

export const providerShape = {
  name,
  display_name: z.string().min(1).max(100),
  description: z.string().max(2000).optional(),
  api_base_url: httpsUrl,
  /** The policy service of its actions (default: the provider's name). */
  service: name.optional(),
  auth: z.strictObject(authShape),
  /** Default body encoding of writes: json or form (Stripe). */
  encoding: z.enum(["json", "form"], "must be json or form").optional(),
  timeout_ms: z.number().int().min(100).max(300_000).optional(),
  op_groups: z.record(groupName, z.strictObject(groupShape)),
  operations: z.array(z.strictObject(operationShape)).min(1, "must list at least one operation"),
  /** Inbound events: POST /v1/webhooks/<name>, verified with the provider's signature scheme. */
  webhooks: z.strictObject(webhookShape).optional(),
  // Data-protection metadata, shown to people and kept with the spec.
  data_region: z.string().max(64).optional(),
  eu_compliant: z.boolean().optional(),
  gdpr_role: z.enum(["controller", "processor", "joint_controller"]).optional(),
  gdpr_legal_basis: z.string().max(64).optional(),
  gdpr_transfer_mechanism: z.string().max(64).optional(),
  dpa_reference: z.string().max(500).optional(),
  data_categories: z.array(z.string().max(64)).optional(),
  retention_days: z.number().int().min(0).max(100_000).optional(),
};
export const ProviderSpecSchema = z.strictObject(providerShape);
type RawSpec = z.infer<typeof ProviderSpecSchema>;

export function providerKnownKeysAt(path: readonly PropertyKey[]): string[] | undefined {
  const at = path.map((k) => (typeof k === "number" ? "#" : String(k))).join("/");
  if (at === "") return Object.keys(providerShape);
  if (at === "auth") return Object.keys(authShape);
  if (at === "webhooks") return Object.keys(webhookShape);
  if (/^webhooks\/reactions\/#$/.test(at)) return Object.keys(reactionShape);
  if (/^webhooks\/reactions\/#\/when$/.test(at)) return Object.keys(reactionShape.when.shape);
  if (at === "webhooks/subject") return Object.keys(subjectShape);
  if (/^op_groups\/[^/]+$/.test(at)) return Object.keys(groupShape);
  if (/^operations\/#$/.test(at)) return Object.keys(operationShape);
  if (/^operations\/#\/constraints\/#$/.test(at)) return Object.keys(constraintDocShape);
  if (/^operations\/#\/params\/[^/]+$/.test(at)) return Object.keys(paramShape);
  if (/^operations\/#\/amount$/.test(at)) return ["field", "currency_field", "currency"];
  return undefined;
}

export type Encoding = "query" | "json" | "form";

export interface Operation {
  name: string;
  group: string;
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  endpoint: string;
  /** Placeholders of the endpoint, in order. */
  pathParams: string[];
  /** Matches a request path (for the proxy), capturing the path params. */
  pathPattern: RegExp;
  action: string;
  resource: string;
  encoding: Encoding;
  /** What the operation does, from the spec (shown to agents, for example as an MCP tool's description). */
  description: string | undefined;
  params: Record<string, { type: string; required: boolean; description?: string | undefined }>;
  constraints: { name: string; type: string; param: string; description: string | undefined }[];
  timeoutMs: number;
  /** Safe to send twice: reads, and writes carrying an idempotency key. */
  idempotent: boolean;
  /** Where a money-moving operation's amount and currency are. */
  amount: { field: string; currencyField: string | undefined; currency: string | undefined } | undefined;
  /** Whether a person approves each call. */
  approval: "each_call" | undefined;
  /** Only reads (its group is `kind: read`): its decision line may commit with its outcome line. */
  read: boolean;
}

export interface Reaction {
  name: string;
  event: string;
  field: string | undefined;
  in: (string | number)[] | undefined;
  operation: string;
  params: Record<string, string | number | boolean>;
  actor: { project: string; agent: string };
  /** Conditions on the event's agent (webhooks.subject): its drift, trust and pact. */
  drift: "minor" | "major" | undefined;
  trustBelow: number | undefined;
  pactViolated: boolean | undefined;
}

/** Which agent an event is about, and what of it counts (see subjectShape). */
export interface WebhookSubject {
  events: string[] | undefined;
  resource: string;
  merchantCategory: string | undefined;
  amount: { field: string; currencyField: string } | undefined;
}

export interface ProviderSpec {
  name: string;
  displayName: string;
  service: string;
  baseUrl: string;
  /** How the upstream's credential is sent; undefined only for an MCP server that needs none. */
  auth:
    | { type: "bearer" | "basic" | "header"; credential: string; header: string; prefix: string }
    | undefined;
  groups: Map<
    string,
    {
      default: "allow" | "deny";
      roles: string[] | undefined;
      kind: "read" | "write";
      description?: string | undefined;
    }
  >;
  operations: Map<string, Operation>;
  webhooks:
    | {
        scheme: "stripe" | "revolut";
        secret: string;
        toleranceSeconds: number;
        reactions: Reaction[];
        subject: WebhookSubject | undefined;
      }
    | undefined;
  dataProtection: Record<string, unknown>;
  /** For an MCP server behind Butler (mcp_servers/*.yaml): how it is reached; its operations are its tools. */
  mcp?: McpUpstreamSpec | undefined;
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

type RawOperation = RawSpec["operations"][number];

type RawParams = Record<
  string,
  { type: string; required?: boolean | undefined; description?: string | undefined }
>;
type RawConstraints = { name: string; type: string; param_field: string; description?: string | undefined }[];

/** An operation's (or an MCP tool's) declared params and documented constraints, compiled. */
export function paramsAndConstraints(o: {
  params?: RawParams | undefined;
  constraints?: RawConstraints | undefined;
}) {
  return {
    params: Object.fromEntries(
      Object.entries(o.params ?? {}).map(([k, v]) => [
        k,
        { type: v.type, required: v.required ?? false, description: v.description },
      ]),
    ),
    constraints: (o.constraints ?? []).map((c) => ({
      name: c.name,
      type: c.type,
      param: c.param_field,
      description: c.description,
    })),
  };
}

/** Where a money-moving operation's amount and currency are, compiled. */
export function amountSpecOf(
  a: { field: string; currency_field?: string | undefined; currency?: string | undefined } | undefined,
): Operation["amount"] {
  return a
    ? { field: a.field, currencyField: a.currency_field, currency: a.currency?.toUpperCase() }
    : undefined;
}

/**
 * Refuses names whose MCP tool name (`<provider>_<name>`) is taken already (`toolsTaken`: by another
 * provider's operation or MCP server's tool), reported at `at(i)`.
 */
export function reportTakenTools(
  provider: string,
  names: readonly string[],
  toolsTaken: ReadonlyMap<string, string> | undefined,
  at: (i: number) => (string | number)[],
  report: Report,
): void {
  names.forEach((n, i) => {
    const tool = mcpToolName(provider, n);
    const other = toolsTaken?.get(tool);
    if (other) report(at(i), `its MCP tool would be ${tool}, which is already ${other}; rename one`);
  });
}

/** One operation of a spec, checked (problems reported at `operations[i]`) and compiled. */
function compileOperation(
  raw: RawSpec,
  o: RawOperation,
  i: number,
  service: string,
  report: Report,
): Operation {
  if (!raw.op_groups[o.op_group])
    report(
      ["operations", i, "op_group"],
      `op_group '${o.op_group}' is not in op_groups (${Object.keys(raw.op_groups).join(", ")})`,
    );
  const pathParams = [...o.endpoint.matchAll(PLACEHOLDER)].map((m) => m[1]!);
  const unbalanced = /[{}]/.test(o.endpoint.replace(PLACEHOLDER, ""));
  if (unbalanced) report(["operations", i, "endpoint"], "has an unbalanced { or }");
  // The path sent upstream must be the template exactly (checked before every call): nothing
  // a URL parser would rewrite, and each placeholder one whole segment.
  const segments = o.endpoint.slice(1).split("/");
  segments.forEach((seg, k) => {
    if (seg === "." || seg === "..")
      report(["operations", i, "endpoint"], `must not contain the dot segment '${seg}'`);
    else if (seg === "" && k < segments.length - 1)
      report(["operations", i, "endpoint"], "must not contain an empty segment (//)");
    else if (!unbalanced && seg.includes("{") && !/^\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(seg))
      report(
        ["operations", i, "endpoint"],
        `placeholder in '${seg}': a placeholder must be a whole path segment, such as /things/{id}`,
      );
  });
  const action = o.action ?? `${service}:${o.name}`;
  if (!action.startsWith(`${service}:`))
    report(["operations", i, "action"], `must start with the provider's service '${service}:'`);
  for (const field of [action, o.resource ?? ""])
    for (const m of field.matchAll(PLACEHOLDER))
      if (!pathParams.includes(m[1]!) && !o.params?.[m[1]!])
        report(["operations", i], `placeholder {${m[1]}} is neither a path parameter nor a declared param`);
  const escaped = o.endpoint
    .split(PLACEHOLDER)
    .map((part, k) => (k % 2 === 1 ? "([^/]+)" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("");
  const encoding: Encoding =
    o.encoding ?? (o.method === "GET" || o.method === "DELETE" ? "query" : (raw.encoding ?? "json"));
  return {
    name: o.name,
    group: o.op_group,
    method: o.method,
    endpoint: o.endpoint,
    pathParams,
    pathPattern: new RegExp(`^${escaped}/?$`),
    action,
    resource: o.resource ?? `${new URL(raw.api_base_url).host}${o.endpoint}`,
    encoding,
    description: o.description,
    ...paramsAndConstraints(o),
    timeoutMs: o.timeout_ms ?? raw.timeout_ms ?? 30_000,
    idempotent: o.method === "GET",
    approval: o.approval,
    read: raw.op_groups[o.op_group]?.kind === "read",
    amount: amountSpecOf(o.amount),
  };
}

/**
 * The checks that need the whole spec: one operation per method and path, reactions naming
 * defined operations, an amount's currency given exactly once, header auth naming its header.
 */
function checkAcross(raw: RawSpec, operations: ReadonlyMap<string, Operation>, report: Report): void {
  // Two operations answering the same method and path would make the proxy's choice arbitrary.
  const seen = new Map<string, string>();
  raw.operations.forEach((o, i) => {
    const key = `${o.method} ${o.endpoint.replace(PLACEHOLDER, "{}")}`;
    const other = seen.get(key);
    if (other)
      report(["operations", i, "endpoint"], `${o.method} ${o.endpoint} is also operation '${other}'`);
    else seen.set(key, o.name);
  });
  raw.webhooks?.reactions?.forEach((r, i) => {
    if (!operations.has(r.call.operation))
      report(
        ["webhooks", "reactions", i, "call", "operation"],
        `operation '${r.call.operation}' is not defined`,
      );
    if ((r.when.field === undefined) !== (r.when.in === undefined))
      report(["webhooks", "reactions", i, "when"], "field and in go together");
    if (
      (r.when.drift !== undefined ||
        r.when.trust_below !== undefined ||
        r.when.pact_violated !== undefined) &&
      !raw.webhooks?.subject
    )
      report(
        ["webhooks", "reactions", i, "when"],
        "drift, trust_below and pact_violated speak of the event's agent: add webhooks.subject to say which it is",
      );
  });
  raw.operations.forEach((o, i) => {
    if (o.amount && !o.amount.currency_field === !o.amount.currency)
      report(["operations", i, "amount"], "needs exactly one of currency_field and currency");
    // A read's decision line is written after the provider answered: nothing that can change
    // anything may be one.
    if (raw.op_groups[o.op_group]?.kind !== "read") return;
    if (o.method !== "GET")
      report(
        ["operations", i, "method"],
        `op_group '${o.op_group}' is kind: read, so its operations must be GET (this is ${o.method}); put it in a write group`,
      );
    if (o.amount)
      report(
        ["operations", i, "amount"],
        `op_group '${o.op_group}' is kind: read, and an operation that moves money is not a read`,
      );
  });
  if (raw.auth.type === "header" && !raw.auth.header)
    report(["auth"], "type header needs header: the name of the header that carries the credential");
}

function crossCheck(raw: RawSpec, report: Report): ProviderSpec {
  const service = raw.service ?? raw.name;
  const operations = new Map<string, Operation>();
  raw.operations.forEach((o, i) => {
    if (operations.has(o.name)) report(["operations", i, "name"], `operation '${o.name}' is defined twice`);
    operations.set(o.name, compileOperation(raw, o, i, service, report));
  });
  checkAcross(raw, operations, report);
  const { name: _n, display_name, api_base_url, auth, operations: _o, op_groups, webhooks, ...rest } = raw;
  const dataProtection = Object.fromEntries(
    Object.entries(rest).filter(([k]) => !["service", "encoding", "timeout_ms", "description"].includes(k)),
  );
  return {
    name: raw.name,
    displayName: display_name,
    service,
    baseUrl: api_base_url.replace(/\/+$/, ""),
    auth: {
      type: auth.type,
      credential: auth.credential,
      header: auth.type === "header" ? auth.header! : "Authorization",
      prefix: auth.prefix ?? (auth.type === "basic" ? "Basic" : "Bearer"),
    },
    groups: new Map(
      Object.entries(op_groups).map(([k, g]) => [
        k,
        { default: g.default, roles: g.roles, kind: g.kind ?? "write", description: g.description },
      ]),
    ),
    operations,
    webhooks: webhooks
      ? {
          scheme: webhooks.scheme,
          secret: webhooks.secret,
          toleranceSeconds: webhooks.tolerance_seconds ?? 300,
          reactions: (webhooks.reactions ?? []).map((r) => ({
            name: r.name,
            event: r.when.event,
            field: r.when.field,
            in: r.when.in,
            operation: r.call.operation,
            params: r.call.params ?? {},
            actor: r.actor,
            drift: r.when.drift,
            trustBelow: r.when.trust_below,
            pactViolated: r.when.pact_violated,
          })),
          subject: webhooks.subject && {
            events: webhooks.subject.events,
            resource: webhooks.subject.resource,
            merchantCategory: webhooks.subject.merchant_category,
            amount: webhooks.subject.amount && {
              field: webhooks.subject.amount.field,
              currencyField: webhooks.subject.amount.currency_field,
            },
          },
        }
      : undefined,
    dataProtection,
  };
}

/** The MCP tool an operation is: `<provider>_<operation>` (see src/mcp/tools.ts). */
export function mcpToolName(provider: string, operation: string): string {
  return `${provider}_${operation}`;
}

/** Butler's own MCP tool, which no provider's operation may shadow. */
export const REQUEST_ACCESS_TOOL = "butler_request_access";

/**
 * Parses and checks one provider spec file, reporting every problem with its position. `toolsTaken` (MCP tool name → whose it is) holds the tool
 * names of the providers loaded before it: an operation whose tool name is taken is refused, since
 * provider and operation names may both hold `_` and `tools/call` could not tell them apart.
 */
export function parseProviderFile(
  src: FileSource,
  toolsTaken?: ReadonlyMap<string, string>,
): Result<ProviderSpec, FileIssue[]> {
  return parseYamlFile(src, {
    schema: ProviderSpecSchema,
    knownKeysAt: providerKnownKeysAt,
    what: "a provider spec",
    needs: "name, display_name, api_base_url, auth, op_groups and operations",
    maxBytes: 1024 * 1024,
    maxBytesMessage: "the file is larger than 1 MiB",
    multipleDocuments: "put each provider in its own file",
    crossCheck: (raw, report) => {
      const out = crossCheck(raw, report);
      reportTakenTools(
        raw.name,
        raw.operations.map((o) => o.name),
        toolsTaken,
        (i) => ["operations", i, "name"],
        report,
      );
      return out;
    },
  });
}
