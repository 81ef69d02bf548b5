import type { TaskPushNotificationConfig } from "@a2a-js/sdk";
import { and, count, eq } from "drizzle-orm";
import type { Clock } from "../clock.js";
import type { Queryable, Tx } from "../db/client.js";
import { a2aPushConfigs } from "../db/schema.js";
import { newId } from "../ids.js";
import { enqueue, type OutboxMessage } from "../outbox/outbox.js";
import type { PushSealer } from "./push-secrets.js";
import { checkPushUrl, type PushAllowlist } from "./push-url.js";
import { configView } from "./sdk-mapping.js";
import { TaskFault } from "./task-state.js";

/** The outbox topic of push notifications: one message per receiver and task event. */
export const A2A_PUSH_TOPIC = "a2a.push" as const;

declare module "../outbox/outbox.js" {
  interface OutboxTopics {
    /** Send one task update to one push config's receiver. */
    "a2a.push": A2APushPayload;
  }
}

/** What an `a2a.push` outbox message carries. */
export interface A2APushPayload {
  configId: string;
  taskId: string;
  state: string;
  /** The StreamResponse JSON sent as the push's body. */
  event: Record<string, unknown>;
}

export type PushConfigRow = typeof a2aPushConfigs.$inferSelect;

/** Push receivers per task: each costs a delivery per task event. */
const MAX_PUSH_CONFIGS = 5;

/** Checks a push config completely (before anything is stored); returns its checked URL. */
export function checkPushConfig(
  c: TaskPushNotificationConfig,
  allowlist: PushAllowlist,
  sealer: Pick<PushSealer, "canSeal">,
): URL {
  const malformed = (message: string) => new TaskFault("malformed", message);
  const checked = checkPushUrl(c.url, allowlist);
  if (!checked.ok) throw malformed(checked.error);
  if (c.token.length > 512) throw malformed("push notification token: must be at most 512 characters");
  if (c.authentication && c.authentication.credentials.length > 4096)
    throw malformed("push notification credentials: must be at most 4096 characters");
  if (c.authentication && !/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(c.authentication.scheme))
    throw malformed("push notification authentication scheme: must be a word such as Bearer");
  if (/[\u0000-\u001f\u007f]/.test(`${c.token}${c.authentication?.credentials ?? ""}${c.id}`))
    throw malformed("push notification token and credentials must not contain control characters");
  // They are stored sealed, never in plaintext: without a key they are refused, before anything is stored.
  if ((c.token || c.authentication?.credentials) && !sealer.canSeal)
    throw new TaskFault(
      "unsupported",
      "this server stores push notification tokens and credentials encrypted and has no key for it (its operator sets BUTLER_MASTER_KEY); send the push notification config without token and authentication",
    );
  return checked.value;
}

/** Outbox messages for a task's events, one queue per receiver so that each gets them in order. */
async function pushMessages(
  q: Queryable,
  taskId: string,
  events: readonly Record<string, unknown>[],
  state: string,
): Promise<OutboxMessage[]> {
  const configs = await q
    .select({ id: a2aPushConfigs.id })
    .from(a2aPushConfigs)
    .where(eq(a2aPushConfigs.taskId, taskId));
  return configs.flatMap((c) =>
    events.map((event) => {
      const payload: A2APushPayload = { configId: c.id, taskId, state, event };
      return { topic: A2A_PUSH_TOPIC, key: `a2a-push:${c.id}`, payload };
    }),
  );
}

/**
 * Where agents want to hear of their tasks: push configs as rows, their tokens and credentials
 * sealed at rest (push-secrets.ts), and the pushes of a task's events queued in the outbox.
 */
export function createPushConfigStore(deps: { clock: Clock; sealer: PushSealer; allowlist: PushAllowlist }) {
  const { clock, sealer, allowlist } = deps;
  const byId = (taskId: string, id: string) =>
    and(eq(a2aPushConfigs.taskId, taskId), eq(a2aPushConfigs.id, `${taskId}:${id}`));

  /** A stored config with its token and credentials opened. */
  const opened = (c: PushConfigRow): PushConfigRow => ({
    ...c,
    token: sealer.open(c.id, "token", c.token),
    authCredentials: c.authCredentials === null ? null : sealer.open(c.id, "credentials", c.authCredentials),
  });

  return {
    /** Throws a fault if the config cannot be stored; call before anything else is written. */
    check: (c: TaskPushNotificationConfig): URL => checkPushConfig(c, allowlist, sealer),

    /** Stores (or replaces, by id) a task's push config, checked and sealed. */
    async save(tx: Tx, taskId: string, c: TaskPushNotificationConfig): Promise<TaskPushNotificationConfig> {
      const url = checkPushConfig(c, allowlist, sealer).href;
      const [{ n }] = (await tx
        .select({ n: count() })
        .from(a2aPushConfigs)
        .where(eq(a2aPushConfigs.taskId, taskId))) as [{ n: number }];
      if (Number(n) >= MAX_PUSH_CONFIGS)
        throw new TaskFault(
          "malformed",
          `task ${taskId} already has ${MAX_PUSH_CONFIGS} push notification configs; delete one first`,
        );
      const id =
        c.id && /^[A-Za-z0-9_.-]{1,64}$/.test(c.id) ? `${taskId}:${c.id}` : `${taskId}:${newId("push")}`;
      const token = sealer.seal(id, "token", c.token);
      const authCredentials = c.authentication
        ? sealer.seal(id, "credentials", c.authentication.credentials)
        : null;
      const authScheme = c.authentication?.scheme ?? null;
      const [saved] = await tx
        .insert(a2aPushConfigs)
        .values({ id, taskId, url, token, authScheme, authCredentials, createdAt: clock.now() })
        .onConflictDoUpdate({ target: a2aPushConfigs.id, set: { url, token, authScheme, authCredentials } })
        .returning();
      return configView(opened(saved!));
    },

    /** One of a task's configs, by the id the agent knows it by. */
    async find(q: Queryable, taskId: string, id: string): Promise<TaskPushNotificationConfig | undefined> {
      const [c] = await q.select().from(a2aPushConfigs).where(byId(taskId, id));
      return c && configView(opened(c));
    },

    async list(q: Queryable, taskId: string): Promise<TaskPushNotificationConfig[]> {
      const configs = await q.select().from(a2aPushConfigs).where(eq(a2aPushConfigs.taskId, taskId));
      return configs.map((c) => configView(opened(c)));
    },

    /** Idempotent: deleting a config that is gone (or never was) succeeds. */
    async remove(q: Queryable, taskId: string, id: string): Promise<void> {
      await q.delete(a2aPushConfigs).where(byId(taskId, id));
    },

    /** Where to send a push (for the outbox handler); undefined once the agent deleted the config. */
    async target(q: Queryable, configId: string): Promise<PushConfigRow | undefined> {
      const [c] = await q.select().from(a2aPushConfigs).where(eq(a2aPushConfigs.id, configId));
      return c && opened(c);
    },

    /** Queues the pushes of a task's events in `tx`, to every receiver the task has. */
    async queuePushes(
      tx: Tx,
      taskId: string,
      events: readonly Record<string, unknown>[],
      state: string,
      now: Date,
    ): Promise<void> {
      await enqueue(tx, await pushMessages(tx, taskId, events, state), now);
    },
  };
}

export type PushConfigStore = ReturnType<typeof createPushConfigStore>;
