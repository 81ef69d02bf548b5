import { z } from "zod";
import type { Result } from "../result.js";
import { type FileIssue, type FileSource, parseYamlFile, type Report } from "../yaml-file.js";
import {
  amountSpecOf,
  authShape,
  constraintDocShape,
  groupShape,
  type Operation,
  type ProviderSpec,
  paramShape,
  paramsAndConstraints,
  reportTakenTools,
} from "./spec.js";

/**
 * MCP servers behind Butler (`mcp_servers/*.yaml`): an upstream MCP server reached over
 * Streamable HTTP (`url`) or as a child process speaking stdio (`command`), whose listed tools
 * Butler re-exposes as `<name>_<tool>` and governs like provider operations. Each tool is the
 * action `mcp:<name>:<tool>` of the policy service `mcp`. Pure: parsing and checking only.
 */

/** The policy service of every MCP server's tools; the action is `mcp:<server>:<tool>`. */
export const MCP_SERVICE = "mcp";

const serverName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "must be lower-case letters, digits and - (for example files)");
/** An upstream tool's name, as MCP allows it (letters, digits, _ . -). */
const toolName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, "must be the upstream tool's name: letters, digits, _ . -");
const envName = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{0,127}$/, "must be an environment variable name such as GITHUB_TOKEN");
const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return (u.protocol === "https:" || u.protocol === "http:") && !u.username && !u.password;
  } catch {
    return false;
  }
}, "must be an http(s) URL without user name or password");
const paramPath = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/,
    "must be a parameter name or dotted path such as path or options.mode",
  );

export const mcpToolShape = {
  /** The upstream's tool name; Butler exposes it as `<server>_<name>`. */
  name: toolName,
  op_group: z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/, "must be an op_groups name"),
  /** The resource the policy sees (default `mcp://<server>/<tool>`); may use {param} placeholders. */
  resource: z.string().regex(/^\S+$/, "must not contain whitespace").optional(),
  /** Arguments Butler checks before anything else (the upstream checks its own schema too). */
  params: z.record(paramPath, z.strictObject(paramShape)).optional(),
  constraints: z.array(z.strictObject(constraintDocShape)).optional(),
  approval: z.enum(["each_call"], "must be each_call (leave it out when no person is needed)").optional(),
  amount: z
    .strictObject({
      field: paramPath,
      currency_field: paramPath.optional(),
      currency: z
        .string()
        .regex(/^[A-Za-z]{3}$/, "must be a three-letter currency code")
        .optional(),
    })
    .optional(),
  timeout_ms: z.number().int().min(100).max(300_000).optional(),
};

export const mcpServerShape = {
  name: serverName,
  display_name: z.string().min(1).max(100),
  description: z.string().max(2000).optional(),
  /** Streamable HTTP endpoint of the upstream MCP server. */
  url: httpUrl.optional(),
  /** For HTTP: the header carrying the upstream's credential (from the environment or the vault). */
  auth: z.strictObject(authShape).optional(),
  /** For stdio: the program to start, its arguments, environment and working directory. */
  command: z.string().min(1).max(1024).optional(),
  args: z.array(z.string().max(4096)).max(64).optional(),
  env: z.record(envName, z.string().max(4096)).optional(),
  cwd: z.string().min(1).max(1024).optional(),
  /** For stdio: environment variables of the child set from credentials (variable → credential name). */
  credential_env: z.record(envName, envName).optional(),
  timeout_ms: z.number().int().min(100).max(300_000).optional(),
  /** How often the upstream's tool descriptions are read again to catch a changed one (default 60). */
  recheck_seconds: z.number().int().min(1).max(86_400).optional(),
  op_groups: z.record(
    z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/, "must be lower-case letters, digits and . _ -"),
    z.strictObject(groupShape),
  ),
  /** The upstream tools Butler exposes; any other tool of the server is not reachable. */
  tools: z.array(z.strictObject(mcpToolShape)).min(1, "must list at least one tool"),
};
export const McpServerSpecSchema = z.strictObject(mcpServerShape);
type RawServer = z.infer<typeof McpServerSpecSchema>;

function knownKeysAt(path: readonly PropertyKey[]): string[] | undefined {
  const at = path.map((k) => (typeof k === "number" ? "#" : String(k))).join("/");
  if (at === "") return Object.keys(mcpServerShape);
  if (at === "auth") return Object.keys(authShape);
  if (/^op_groups\/[^/]+$/.test(at)) return Object.keys(groupShape);
  if (/^tools\/#$/.test(at)) return Object.keys(mcpToolShape);
  if (/^tools\/#\/constraints\/#$/.test(at)) return Object.keys(constraintDocShape);
  if (/^tools\/#\/params\/[^/]+$/.test(at)) return Object.keys(paramShape);
  if (/^tools\/#\/amount$/.test(at)) return ["field", "currency_field", "currency"];
  return undefined;
}

/** How Butler reaches an upstream MCP server. */
export type McpConnection =
  | { transport: "http"; url: string }
  | {
      transport: "stdio";
      command: string;
      args: string[];
      env: Record<string, string>;
      cwd: string | undefined;
      /** Child environment variable → credential name. */
      credentialEnv: Record<string, string>;
    };

export interface McpUpstreamSpec {
  connection: McpConnection;
  /** How often the tool descriptions are read again, in ms. */
  recheckMs: number;
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

function compileTool(raw: RawServer, t: RawServer["tools"][number], i: number, report: Report): Operation {
  if (!raw.op_groups[t.op_group])
    report(
      ["tools", i, "op_group"],
      `op_group '${t.op_group}' is not in op_groups (${Object.keys(raw.op_groups).join(", ")})`,
    );
  for (const m of (t.resource ?? "").matchAll(PLACEHOLDER))
    if (!t.params?.[m[1]!]) report(["tools", i, "resource"], `placeholder {${m[1]}} is not a declared param`);
  if (t.amount && !t.amount.currency_field === !t.amount.currency)
    report(["tools", i, "amount"], "needs exactly one of currency_field and currency");
  const read = raw.op_groups[t.op_group]?.kind === "read";
  if (read && t.amount)
    report(
      ["tools", i, "amount"],
      `op_group '${t.op_group}' is kind: read, and a tool that moves money is not a read`,
    );
  return {
    name: t.name,
    group: t.op_group,
    method: "POST",
    endpoint: `/${t.name}`,
    pathParams: [],
    // No proxied request is ever one of these: tools are called by name (MCP or REST).
    pathPattern: /(?!)/,
    action: `${MCP_SERVICE}:${raw.name}:${t.name}`,
    resource: t.resource ?? `mcp://${raw.name}/${t.name}`,
    encoding: "json",
    // The upstream's own description is shown (as pinned); this one is Butler's fallback.
    description: undefined,
    ...paramsAndConstraints(t),
    timeoutMs: t.timeout_ms ?? raw.timeout_ms ?? 30_000,
    idempotent: read,
    approval: t.approval,
    read,
    amount: amountSpecOf(t.amount),
  };
}

function crossCheck(raw: RawServer, report: Report): ProviderSpec {
  if ((raw.url === undefined) === (raw.command === undefined))
    report([], "needs exactly one of url (Streamable HTTP) and command (stdio)");
  if (raw.url !== undefined)
    for (const key of ["args", "env", "cwd", "credential_env"] as const)
      if (raw[key] !== undefined) report([key], `is for a stdio server (command); this one has url`, true);
  if (raw.command !== undefined && raw.auth !== undefined)
    report(
      ["auth"],
      "is for an HTTP server (url); give a stdio server its credentials with credential_env",
      true,
    );
  if (raw.auth?.type === "header" && !raw.auth.header)
    report(["auth"], "type header needs header: the name of the header that carries the credential");
  const operations = new Map<string, Operation>();
  raw.tools.forEach((t, i) => {
    if (operations.has(t.name)) report(["tools", i, "name"], `tool '${t.name}' is listed twice`);
    operations.set(t.name, compileTool(raw, t, i, report));
  });
  const connection: McpConnection =
    raw.url !== undefined
      ? { transport: "http", url: raw.url }
      : {
          transport: "stdio",
          command: raw.command ?? "",
          args: raw.args ?? [],
          env: raw.env ?? {},
          cwd: raw.cwd,
          credentialEnv: raw.credential_env ?? {},
        };
  return {
    name: raw.name,
    displayName: raw.display_name,
    service: MCP_SERVICE,
    baseUrl: raw.url ?? `stdio:${raw.command}`,
    auth: raw.auth
      ? {
          type: raw.auth.type,
          credential: raw.auth.credential,
          header: raw.auth.type === "header" ? raw.auth.header! : "Authorization",
          prefix: raw.auth.prefix ?? (raw.auth.type === "basic" ? "Basic" : "Bearer"),
        }
      : undefined,
    groups: new Map(
      Object.entries(raw.op_groups).map(([k, g]) => [
        k,
        { default: g.default, roles: g.roles, kind: g.kind ?? "write", description: g.description },
      ]),
    ),
    operations,
    webhooks: undefined,
    dataProtection: {},
    mcp: { connection, recheckMs: (raw.recheck_seconds ?? 60) * 1000 },
  };
}

/** The credential names a server needs (its HTTP auth, or its stdio credential_env), for the secrets list. */
export function mcpCredentialNames(spec: ProviderSpec): string[] {
  const c = spec.mcp?.connection;
  if (!c) return [];
  return c.transport === "stdio" ? Object.values(c.credentialEnv) : spec.auth ? [spec.auth.credential] : [];
}

/**
 * Parses and checks one MCP server file, reporting every problem with its position. `toolsTaken`
 * holds the MCP tool names taken before it (providers' operations, other servers' tools).
 */
export function parseMcpServerFile(
  src: FileSource,
  toolsTaken?: ReadonlyMap<string, string>,
): Result<ProviderSpec, FileIssue[]> {
  return parseYamlFile(src, {
    schema: McpServerSpecSchema,
    knownKeysAt,
    what: "an MCP server",
    needs: "name, display_name, url or command, op_groups and tools",
    maxBytes: 256 * 1024,
    maxBytesMessage: "the file is larger than 256 KiB",
    multipleDocuments: "put each MCP server in its own file",
    crossCheck: (raw, report) => {
      const out = crossCheck(raw, report);
      reportTakenTools(
        raw.name,
        raw.tools.map((t) => t.name),
        toolsTaken,
        (i) => ["tools", i, "name"],
        report,
      );
      return out;
    },
  });
}
