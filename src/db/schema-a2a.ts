import { index, integer, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

const createdAt = () => timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();

export const A2A_TASK_STATES = [
  "submitted",
  "input_required",
  "completed",
  "rejected",
  "canceled",
  "failed",
] as const;

/**
 * A2A tasks: one per access request asked over A2A (or refused before it became one). `task` is
 * the protocol's Task JSON as last sent; `version` grows with every change so that instances
 * streaming the task to an agent can tell new states from ones they already sent.
 */
export const a2aTasks = pgTable(
  "a2a_tasks",
  {
    id: text("id").primaryKey(),
    agent: text("agent").notNull(),
    project: text("project").notNull(),
    contextId: text("context_id").notNull(),
    requestId: text("request_id"),
    state: text("state", { enum: A2A_TASK_STATES }).notNull(),
    version: integer("version").notNull().default(1),
    task: jsonb("task").$type<Record<string, unknown>>().notNull(),
    /** What the task last told the agent about its grant (`active`, `revoked`, `expired`, `used`). */
    grantState: text("grant_state"),
    createdAt: createdAt(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    index("a2a_tasks_owner_idx").on(t.project, t.agent, t.updatedAt),
    index("a2a_tasks_request_idx").on(t.requestId),
  ],
);

/** Where an agent wants to be told of a task's changes (A2A push notification configs). */
export const a2aPushConfigs = pgTable(
  "a2a_push_configs",
  {
    id: text("id").primaryKey(),
    taskId: text("task_id")
      .notNull()
      .references(() => a2aTasks.id),
    url: text("url").notNull(),
    /** Sent back to the agent's receiver so that it can tell our pushes from forgeries. */
    token: text("token").notNull().default(""),
    authScheme: text("auth_scheme"),
    authCredentials: text("auth_credentials"),
    createdAt: createdAt(),
  },
  (t) => [index("a2a_push_configs_task_idx").on(t.taskId)],
);
