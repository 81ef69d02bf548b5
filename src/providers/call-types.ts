import type { AuditLog } from "../audit/audit-log.js";
import type { Butler } from "../butler/butler-service.js";
import type { Clock } from "../clock.js";
import type { Alerts } from "../gateway/alerts.js";
import type { Behaviour } from "../gateway/behaviour.js";
import type { Gateway } from "../gateway/gateway-service.js";
import type { Incidents } from "../gateway/trust.js";
import type { OneShots } from "../grants/one-shot.js";
import type { Logger } from "../logger.js";
import type { BudgetDef } from "../policy/types.js";
import type { FileIssue } from "../yaml-file.js";
import type { Budgets } from "./budgets.js";
import type { McpUpstreams } from "./mcp-upstream.js";
import type { ProviderSpec } from "./spec.js";
import type { callUpstream } from "./upstream.js";
import type { WebhookEvents } from "./webhook-events.js";

/** The providers of a directory, parsed; files with problems are reported, not loaded. */
export interface ProviderSet {
  providers: Map<string, ProviderSpec>;
  failures: { file: string; issues: FileIssue[] }[];
}

/** A call through the gateway to a provider. */
export interface ProviderCall {
  provider: string;
  operation: string;
  params: Record<string, unknown>;
  /** The agent's own Idempotency-Key, passed on namespaced to the agent. */
  idempotencyKey?: string | undefined;
  /** Accept header to pass on. */
  accept?: string | undefined;
  /** Why a call is made when no agent asked (a webhook reaction); recorded with the decision. */
  via?: string | undefined;
  /** The agent's session (X-Butler-Session), for per-session budgets. */
  session?: string | undefined;
  /** Why the agent makes the call (X-Butler-Reason), shown to the person when it needs approval. */
  reason?: string | undefined;
}

/** What the agent gets back. */
export interface ProviderAnswer {
  status: number;
  contentType: string | undefined;
  body: Buffer;
  /** The audit event of the decision. */
  eventId: string;
}

export interface ProviderGatewayDeps {
  providers: ProviderSet;
  gateway: Pick<Gateway, "authorize" | "authorizeDeferred">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  log: Logger;
  /** The credential of that name (environment variable, then the vault), or undefined. */
  credential: (name: string) => Promise<string | undefined>;
  /** Base URLs replacing the specs' (BUTLER_PROVIDER_URLS: local stand-ins, regional endpoints). */
  baseUrls: Readonly<Record<string, string>>;
  /** Spending limits of money-moving calls. */
  budgets: Pick<Budgets, "reserve" | "release">;
  /** A project's budgets, from the policy in force. */
  projectBudgets: (project: string) => readonly BudgetDef[];
  /** Files the one-shot request for a call that needs a person (approval_required). */
  butler: Pick<Butler, "submit">;
  /** Gives a single-use grant back when its call did not go out. */
  oneShots: Pick<OneShots, "release">;
  /** Provider webhook events, each processed once (claimed with its audit line). */
  webhookEvents: Pick<WebhookEvents, "claim" | "reacted" | "release">;
  /** The MCP client of the servers behind Butler (mcp_servers/*.yaml), when any is loaded. */
  mcp?: Pick<McpUpstreams, "state" | "call"> | undefined;
  /** Provider events as agents' behaviour (webhooks.subject): pact, drift and trust of the event's agent. */
  behaviour?: Pick<Behaviour, "observeEvent" | "spent"> | undefined;
  /** Lowers an agent's trust score for an incident outside a decision (a budget refusal). */
  incidents?: Incidents | undefined;
  /** Security alerts (a project's `security:` section). */
  alerts?: Pick<Alerts, "raise"> | undefined;
  /** The HTTP client (callUpstream; tests may pass another). */
  upstream?: typeof callUpstream;
}

/** What every step of the pipeline is given: the gateway's dependencies, the HTTP client resolved. */
export type PipelineContext = Omit<ProviderGatewayDeps, "upstream"> & { upstream: typeof callUpstream };
