import type { CompiledProject } from "../policy/compile.js";
import { coversAgent } from "../policy/evaluate.js";
import { groupAllows } from "../providers/call-checks.js";
import type { ToolDefinition } from "../providers/mcp-pins.js";
import { mcpToolName, type Operation, type ProviderSpec, REQUEST_ACCESS_TOOL } from "../providers/spec.js";

/**
 * Provider operations as MCP tools (pure): each operation of each provider is one tool, named `<provider>_<operation>`, with an input schema made from the operation's params
 * and annotations from its group. What the agent may do with each is said in the tool's
 * `_meta["butler/access"]` and at the end of its description, as a hint only: every call is
 * decided by the policy when it is made.
 */

/** How a tool stands for the agent right now (a hint; the call itself is decided by the policy). */
export type ToolAccess =
  /** The operation's group allows it for this agent by default (the provider is enabled). */
  | "allowed"
  /** A grant of the project names the operation's action for this agent (its resources and limits apply). */
  | "granted"
  /** A person approves each call (`approval: each_call`): the call files the request. */
  | "each_call"
  /** Nothing allows it yet: a call is denied, and the agent may ask for access (butler_request_access). */
  | "ask"
  /** The project's `never_grant` names it: denied, and no request can change that. */
  | "never";

export interface McpTool {
  name: string;
  title: string;
  description: string;
  inputSchema: JsonSchemaObject;
  annotations: {
    title: string;
    readOnlyHint: boolean;
    destructiveHint: boolean;
    idempotentHint: boolean;
    openWorldHint: boolean;
  };
  _meta: { "butler/access": ToolAccess; "butler/provider": string; "butler/operation": string };
}

interface JsonSchemaObject {
  type: "object";
  properties: Record<string, unknown>;
  required?: string[];
  additionalProperties?: boolean;
}

/** The tool that files an access request for a denied call (no provider's operation may take its name). */
export { REQUEST_ACCESS_TOOL };

/** A tool's name: provider and operation joined by `_`; loading refuses two that collide. */
export const toolName = mcpToolName;

/** The provider operation a tool name stands for, among the providers given. */
export function toolTarget(
  providers: ReadonlyMap<string, ProviderSpec>,
  name: string,
): { spec: ProviderSpec; op: Operation } | undefined {
  // Provider names may hold `_` too: try each split, the provider part first.
  for (let i = name.indexOf("_"); i > 0; i = name.indexOf("_", i + 1)) {
    const spec = providers.get(name.slice(0, i));
    const op = spec?.operations.get(name.slice(i + 1));
    if (spec && op) return { spec, op };
  }
  return undefined;
}

/**
 * Every operation of every provider Butler has as a tool, with the agent's access to it: what it
 * may call now, and what it may ask for (a provider its project does not enable yet is asked for
 * like any other denied call). None for an agent whose project has no policy in force.
 */
export function providerTools(
  providers: ReadonlyMap<string, ProviderSpec>,
  project: CompiledProject | undefined,
  agent: string,
  upstream?: UpstreamDefinitions,
): McpTool[] {
  if (!project) return [];
  const tools: McpTool[] = [];
  for (const spec of providers.values())
    for (const op of spec.operations.values()) {
      const access = accessOf(spec, op, project, agent);
      if (!spec.mcp) tools.push(toolOf(spec, op, access));
      else {
        // An upstream tool is shown as people approved it (its pinned definition), once Butler has read it.
        const shown = upstream?.(spec, op);
        if (shown) tools.push(upstreamToolOf(spec, op, access, shown));
      }
    }
  return tools;
}

/** An upstream MCP tool's pinned definition, and whether the upstream's now differs. */
export type UpstreamDefinitions = (
  spec: ProviderSpec,
  op: Operation,
) => { definition: ToolDefinition; changed: boolean } | undefined;

const CHANGED_TEXT =
  "Butler: its server changed this tool's definition since it was approved; calls are refused until a person approves the change.";

/**
 * A tool of an MCP server behind Butler: the upstream's own (pinned, cleaned) description and input
 * schema, Butler's annotations from the tool's group (the upstream's hints are not trusted).
 */
function upstreamToolOf(
  spec: ProviderSpec,
  op: Operation,
  access: ToolAccess,
  shown: { definition: ToolDefinition; changed: boolean },
): McpTool {
  const base = toolOf(spec, op, access);
  const d = shown.definition;
  const title = d.title || `${spec.displayName} ${op.name}`;
  const group = spec.groups.get(op.group);
  const groupText = group?.description ? ` Group ${op.group}: ${group.description}` : ` Group ${op.group}.`;
  return {
    ...base,
    title,
    description: `${d.description || `${spec.displayName}: ${op.name}`}\n\n(${spec.displayName}, via Butler.${groupText} ${shown.changed ? CHANGED_TEXT : ACCESS_TEXT[access]})`,
    inputSchema: { ...(d.inputSchema as Partial<JsonSchemaObject>), type: "object" } as JsonSchemaObject,
    annotations: { ...base.annotations, title },
  };
}

function accessOf(spec: ProviderSpec, op: Operation, project: CompiledProject, agent: string): ToolAccess {
  if (project.neverGrant.some((g) => g.match(op.action))) return "never";
  if (op.approval === "each_call") return "each_call";
  if (groupAllows(spec, op, project, agent)) return "allowed";
  const roles = project.agentRoles.get(agent) ?? new Set<string>();
  const service = project.services.get(spec.service);
  const verb = op.action.slice(spec.service.length + 1);
  const grants = [...(service?.exact.get(verb) ?? []), ...(service?.patterned ?? [])];
  for (const grant of grants)
    if (
      coversAgent(grant, agent, roles) &&
      grant.actionPatterns.some((p) => p.match(op.action) || p.match(verb))
    )
      return "granted";
  return "ask";
}

const ACCESS_TEXT: Record<ToolAccess, string> = {
  allowed: "Butler: allowed for you now.",
  granted: "Butler: a grant allows it for you (within its resources and limits).",
  each_call:
    "Butler: a person approves each call; calling it files the request, and the same call goes through once approved.",
  ask: `Butler: not allowed for you yet; a call is denied, and ${REQUEST_ACCESS_TOOL} asks a person for access.`,
  never: "Butler: never granted in your project (settings.never_grant); calls are denied.",
};

function toolOf(spec: ProviderSpec, op: Operation, access: ToolAccess): McpTool {
  const group = spec.groups.get(op.group);
  const read = op.read;
  const what = op.description ?? `${spec.displayName}: ${op.method} ${op.endpoint}`;
  const groupText = group?.description ? ` Group ${op.group}: ${group.description}` : ` Group ${op.group}.`;
  const title = `${spec.displayName} ${op.name.replaceAll("_", " ")}`;
  return {
    name: toolName(spec.name, op.name),
    title,
    description: `${what.replace(/\.$/, "")}.${groupText} ${ACCESS_TEXT[access]}`,
    inputSchema: inputSchemaOf(op),
    annotations: {
      title,
      readOnlyHint: read,
      destructiveHint: !read,
      idempotentHint: op.idempotent,
      openWorldHint: true,
    },
    _meta: { "butler/access": access, "butler/provider": spec.name, "butler/operation": op.name },
  };
}

const JSON_TYPES: Record<string, string> = {
  string: "string",
  integer: "integer",
  number: "number",
  boolean: "boolean",
  object: "object",
  array: "array",
};

/**
 * The operation's params as a JSON Schema object: path parameters are required strings; declared
 * params keep their type, required flag and description (a dotted name such as `metadata.order`
 * is a nested object); other params are passed through, as on the REST path.
 */
export function inputSchemaOf(op: Operation): JsonSchemaObject {
  const root: JsonSchemaObject = { type: "object", properties: {}, additionalProperties: true };
  for (const p of op.pathParams) place(root, [p], { type: "string", minLength: 1 }, true);
  for (const [path, def] of Object.entries(op.params)) {
    const schema: Record<string, unknown> = { type: JSON_TYPES[def.type] ?? "string" };
    if (def.description) schema.description = def.description;
    place(root, path.split("."), schema, def.required);
  }
  return root;
}

function place(root: JsonSchemaObject, path: string[], schema: Record<string, unknown>, required: boolean) {
  let at = root;
  path.forEach((key, i) => {
    if (required) {
      at.required ??= [];
      if (!at.required.includes(key)) at.required.push(key);
    }
    if (i === path.length - 1) {
      at.properties[key] = { ...((at.properties[key] as object | undefined) ?? {}), ...schema };
      return;
    }
    let next = at.properties[key] as JsonSchemaObject | undefined;
    if (next?.type !== "object" || next.properties === undefined) {
      next = { type: "object", properties: {}, additionalProperties: true };
      at.properties[key] = next;
    }
    at = next;
  });
}
