import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentIdentity } from "../agents/token-service.js";
import { callProvider } from "./call-pipeline.js";
import type { PipelineContext, ProviderCall, ProviderGatewayDeps, ProviderSet } from "./call-types.js";
import { parseMcpServerFile } from "./mcp-server-spec.js";
import { denyUnknown, routeProxied } from "./proxy-routing.js";
import { mcpToolName, parseProviderFile, REQUEST_ACCESS_TOOL } from "./spec.js";
import { callUpstream } from "./upstream.js";
import { receiveWebhook } from "./webhook-intake.js";

export type { ProviderAnswer, ProviderCall, ProviderGatewayDeps, ProviderSet } from "./call-types.js";
export { UNKNOWN_PROVIDER } from "./proxy-routing.js";

/**
 * The provider specs of `dir` (providers/*.yaml) and the MCP servers of `mcpDir`
 * (mcp_servers/*.yaml), in one set: an MCP server is a provider whose operations are its tools.
 * Files with problems are reported, not loaded; so is a name or MCP tool name already taken.
 */
export async function loadProviders(dir: string, mcpDir?: string): Promise<ProviderSet> {
  const providers: ProviderSet["providers"] = new Map();
  const failures: ProviderSet["failures"] = [];
  const toolsTaken = new Map<string, string>([[REQUEST_ACCESS_TOOL, "Butler's own tool"]]);
  const kinds = [
    { dir, parse: parseProviderFile, what: "provider" },
    ...(mcpDir ? [{ dir: mcpDir, parse: parseMcpServerFile, what: "MCP server" }] : []),
  ];
  for (const kind of kinds)
    for (const n of await yamlFiles(kind.dir)) {
      const file = join(kind.dir, n);
      const r = kind.parse({ file, text: await readFile(file, "utf8") }, toolsTaken);
      if (!r.ok) failures.push({ file, issues: r.error });
      else if (providers.has(r.value.name))
        failures.push({
          file,
          issues: [
            {
              file,
              line: 1,
              col: 1,
              path: "name",
              message: `${kind.what} '${r.value.name}': a provider or MCP server of that name is already loaded`,
            },
          ],
        });
      else {
        providers.set(r.value.name, r.value);
        for (const op of r.value.operations.keys())
          toolsTaken.set(
            mcpToolName(r.value.name, op),
            `${kind.what} ${r.value.name}'s ${r.value.mcp ? "tool" : "operation"} ${op}`,
          );
      }
    }
  return { providers, failures };
}

/** The YAML files of a directory, sorted; none when it does not exist. */
async function yamlFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}

/**
 * The gateway in the call path. Every call, by operation name or through the transparent proxy,
 * goes through one pipeline (call-pipeline.ts); webhooks' reactions too. Its methods are plain
 * functions over one context, safe to pass as callbacks.
 */
export function createProviderGateway(deps: ProviderGatewayDeps) {
  const ctx: PipelineContext = { ...deps, upstream: deps.upstream ?? callUpstream };
  const set = deps.providers.providers;
  const call = (identity: AgentIdentity, c: ProviderCall) => callProvider(ctx, identity, c);
  return {
    call,
    route: (provider: string, method: string, rawPath: string) =>
      routeProxied(set, provider, method, rawPath),
    denyUnknown: (identity: AgentIdentity, provider: string, method: string, rawPath: string) =>
      denyUnknown(
        { audit: deps.audit, clock: deps.clock, providers: set },
        identity,
        provider,
        method,
        rawPath,
      ),
    webhook: (provider: string, headers: Record<string, string | string[] | undefined>, body: string) =>
      receiveWebhook(ctx, call, provider, headers, body),
    providers: set,
  };
}

export type ProviderGateway = ReturnType<typeof createProviderGateway>;
