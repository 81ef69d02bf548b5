import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { Db, Tx } from "../db/client.js";
import type { ErrorCode } from "../errors.js";
import type { Logger } from "../logger.js";
import type { OperationRef } from "../policy/blast-radius.js";
import type { PolicyStore } from "../policy-store/policy-store.js";
import type { ChannelKind } from "./channel-port.js";
import type { AccessRequestView, RequestRow } from "./request-view.js";

/** What the Butler asks of security alerts (declared here: gateway/ depends on butler/, not the reverse). */
export interface AlertRaiser {
  raiseInTx(
    tx: Tx,
    input: {
      kind: "break_glass";
      project: string;
      agent: string;
      title: string;
      facts: string[];
      eventIds: string[];
      requestId?: string | undefined;
    },
  ): Promise<{ id: string } | undefined>;
}

/** A press of a security alert's button, as gateway/alert-actions.ts takes it. */
export interface AlertPress {
  alertId: string;
  action: "acknowledge";
  actor: { channel: ChannelKind; userId: string };
}
export type AlertPressOutcome =
  | { ok: true; message: string; by: string }
  | { ok: false; code: ErrorCode; message: string };

export interface ButlerDeps {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  policies: Pick<
    PolicyStore,
    | "index"
    | "latestIn"
    | "latestHeadIn"
    | "recompose"
    | "refreshProject"
    | "refreshAll"
    | "lockProject"
    | "compiledIn"
    | "importDirectory"
  >;
  clock: Clock;
  log: Logger;
  /** Approval surfaces that get a card for each new request (Slack, Telegram, ...). */
  channels: readonly ChannelKind[];
  /** Whether agents can be told of outcomes (an AgentNotifier is configured). */
  notifyAgents: boolean;
  publicUrl: () => string;
  /** Called after a transaction that wrote outbox messages commits (wakes the outbox worker). */
  onEnqueued?: () => void;
  /** Security alerts (a break-glass is announced as one); see gateway/alerts.ts. */
  alerts?: AlertRaiser | undefined;
  /** Acts on a security alert as a person (a break-glass's review is its alert's acknowledgement). */
  alertAction?: ((input: AlertPress) => Promise<AlertPressOutcome>) | undefined;
  /** Where remembered rules are written: the policies directory, or patches (see remember.ts). */
  rememberPaths?: { policiesDir: string; patchDir: string } | undefined;
  /** Provider operations (of every loaded spec), for a proposal's blast radius. */
  operations?: readonly OperationRef[] | undefined;
  /** A person revoked one of the agent's grants (an incident for its trust score), after the commit. */
  onRevoked?: (project: string, agent: string, eventId: string) => Promise<void>;
}

/** What an agent sends to ask for access. */
export interface AccessRequestInput {
  action?: string | undefined;
  resource?: string | undefined;
  branch?: string | undefined;
  /** A resource glob the grant should name instead of the resource exactly (it must match it). */
  resource_pattern?: string | undefined;
  /** Default: the project's default grant TTL. */
  ttl?: string | number | undefined;
  reason: string;
  denial_event_id?: string | undefined;
  /** For a one-shot request (the denial said approval_required): the denied call's parameters, unchanged. */
  params?: Record<string, unknown> | undefined;
}

export type SubmitResult =
  | { status: "created" | "existing"; request: AccessRequestView }
  | {
      status: "already_allowed";
      grant_id: string;
      revision: number;
      reason: string;
      /** The call as scoped (from the denial when one was named). */
      action: string;
      resource: string;
      branch: string | null;
      /** When the allowing grant stops allowing (null: it does not expire). */
      expires_at: string | null;
    };

/** Who decides: an approver id and the surface they used. */
export interface Reviewer {
  approver: string;
  channel: ChannelKind;
}

/** Which requests a list shows. */
export interface ListFilter {
  status?: RequestRow["status"];
  project?: string;
  /** Only requests of the projects this approver decides. */
  approver?: string;
  /** Only pending requests and those decided since this moment (the dashboard's requests page). */
  pendingOrDecidedSince?: Date;
  limit?: number;
}
