import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentIdentity } from "../agents/token-service.js";
import { callProvider } from "./call-pipeline.js";
import type { PipelineContext, ProviderCall, ProviderGatewayDeps, ProviderSet } from "./call-types.js";
import { denyUnknown, routeProxied } from "./proxy-routing.js";
import { mcpToolName, parseProviderFile, REQUEST_ACCESS_TOOL } from "./spec.js";
import { callUpstream } from "./upstream.js";
import { receiveWebhook } from "./webhook-intake.js";

export type { ProviderAnswer, ProviderCall, ProviderGatewayDeps, ProviderSet } from "./call-types.js";
export { UNKNOWN_PROVIDER } from "./proxy-routing.js";

export async function loadProviders(dir: string): Promise<ProviderSet> {
  const providers: ProviderSet["providers"] = new Map();
  const failures: ProviderSet["failures"] = [];
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { providers, failures };
    throw e;
  }
  const toolsTaken = new Map<string, string>([[REQUEST_ACCESS_TOOL, "Butler's own tool"]]);
  for (const n of names) {
    const file = join(dir, n);
    const r = parseProviderFile({ file, text: await readFile(file, "utf8") }, toolsTaken);
    if (!r.ok) failures.push({ file, issues: r.error });
    else if (providers.has(r.value.name))
      failures.push({
        file,
        issues: [
          { file, line: 1, col: 1, path: "name", message: `provider '${r.value.name}' is defined twice` },
        ],
      });
    else {
      providers.set(r.value.name, r.value);
      for (const op of r.value.operations.keys())
        toolsTaken.set(mcpToolName(r.value.name, op), `provider ${r.value.name}'s operation ${op}`);
    }
  }
  return { providers, failures };
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
