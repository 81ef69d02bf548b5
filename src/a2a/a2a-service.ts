import { AgentCard } from "@a2a-js/sdk";
import type { A2ARequestHandler } from "@a2a-js/sdk/server";
import type { AuditLog } from "../audit/audit-log.js";
import type { Butler } from "../butler/butler-service.js";
import type { AgentNotifier } from "../butler/notifier.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db } from "../db/client.js";
import type { Logger } from "../logger.js";
import type { PolicyStore } from "../policy-store/policy-store.js";
import { agentCard } from "./agent-card.js";
import { createPushConfigStore, type PushConfigRow } from "./push-config-store.js";
import type { PushSealer } from "./push-secrets.js";
import type { PushAllowlist } from "./push-url.js";
import { createSdkHandler } from "./sdk-handler.js";
import { createTaskNotifier } from "./task-notifier.js";
import type { TaskRow } from "./task-repo.js";
import { createTaskService, type KnownGrant } from "./task-service.js";
import { createTaskWatch } from "./task-watch.js";

export interface A2ADeps {
  db: Db;
  butler: Pick<Butler, "get" | "submit" | "cancel">;
  policies: Pick<PolicyStore, "index">;
  audit: Pick<AuditLog, "appendInTx">;
  changes: Pick<ChangeBus, "publish" | "subscribe">;
  clock: Clock;
  log: Logger;
  publicUrl: () => string;
  pushAllowlist: PushAllowlist;
  /** Seals push-config tokens and credentials at rest (push-secrets.ts). */
  pushSealer: PushSealer;
  /** Outbox messages were committed. */
  onEnqueued: () => void;
  version: string;
}

/** What the rest of the Butler uses of its A2A face. */
export interface A2AService {
  /** The A2A SDK's request handler (the route guards it). */
  handler: A2ARequestHandler;
  /** The agent card (the SDK's object). */
  card: () => AgentCard;
  /** The agent card as wire JSON. */
  cardJson: () => unknown;
  /** Tells waiting tasks of their request's news (called by the outbox). */
  notifier: AgentNotifier;
  /** Brings a task up to date with its access request; returns it as it is afterwards. */
  sync: (taskId: string, known?: KnownGrant) => Promise<TaskRow>;
  /** Brings up to date tasks that missed their news; returns how many it looked at. */
  catchUp: (limit?: number) => Promise<number>;
  /** Where a push goes, token and credentials opened (for the outbox handler). */
  pushTarget: (configId: string) => Promise<PushConfigRow | undefined>;
}

/**
 * The Butler as an A2A agent. An agent asks for access with a message whose data part is an access
 * request; the task waits in INPUT_REQUIRED while people decide, and ends COMPLETED (with the grant
 * as its artifact), REJECTED, CANCELED or FAILED (expired). Tasks and push configs are rows, so any
 * instance answers for any task and a waiting task survives restarts. The task is moved from the
 * request's truth (`sync`), called after the agent's own call and by the outbox after every
 * decision; each change bumps the task's version, enqueues pushes in the same transaction, and is
 * announced on the change bus so that every instance's open streams hear it.
 *
 * Assembled from: the task repository (task-repo.ts), the push-config store, the task service
 * (the use cases), the notifier (agent notifications → task updates) and the SDK handler.
 */
export function createA2A(deps: A2ADeps): A2AService {
  const { db, clock, log } = deps;
  const pushes = createPushConfigStore({ clock, sealer: deps.pushSealer, allowlist: deps.pushAllowlist });
  const tasks = createTaskService({
    db,
    butler: deps.butler,
    policies: deps.policies,
    audit: deps.audit,
    changes: deps.changes,
    clock,
    pushes,
    watch: createTaskWatch(deps.changes),
    onEnqueued: deps.onEnqueued,
  });
  const { notifier, catchUp } = createTaskNotifier({ db, tasks, clock, log });
  const card = () => agentCard(deps.publicUrl(), deps.version);
  return {
    handler: createSdkHandler(tasks, card),
    card,
    cardJson: () => AgentCard.toJSON(card()),
    notifier,
    sync: tasks.sync,
    catchUp,
    pushTarget: (configId: string) => pushes.target(db, configId),
  };
}
