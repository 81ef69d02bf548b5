import type { AgentNotification, AgentNotifier } from "../butler/notifier.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/client.js";
import type { Logger } from "../logger.js";
import { staleTaskIds, taskIdsOfRequest } from "./task-repo.js";
import type { TaskService } from "./task-service.js";

export interface TaskNotifierDeps {
  db: Db;
  tasks: Pick<TaskService, "sync">;
  clock: Clock;
  log: Logger;
}

/**
 * The Butler's news for agents, told over A2A: every task waiting on the request is brought up to
 * date, which writes its new state and queues its pushes in the outbox (and wakes open streams).
 */
export function createTaskNotifier(deps: TaskNotifierDeps) {
  const { db, tasks, clock, log } = deps;
  const notifier: AgentNotifier = {
    /** Brings every task waiting on the request up to date; returns how many there are. */
    async notify(n: AgentNotification): Promise<number> {
      const ids = await taskIdsOfRequest(db, n);
      for (const id of ids) await tasks.sync(id, { revision: n.revision, revokeReason: n.reason });
      return ids.length;
    },
  };
  return {
    notifier,
    /**
     * Brings up to date tasks whose request moved without the task hearing of it (a notification
     * given up after its retries, a crash between filing and the first sync). Run by the sweeper.
     */
    async catchUp(limit = 100): Promise<number> {
      const stale = await staleTaskIds(db, clock.now(), limit);
      for (const id of stale)
        await tasks.sync(id).catch((e) => log.warn({ err: e, task: id }, "task catch-up failed"));
      return stale.length;
    },
  };
}
