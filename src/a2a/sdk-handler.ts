import type {
  AgentCard,
  ListTaskPushNotificationConfigsResponse,
  ListTasksRequest,
  ListTasksResponse,
} from "@a2a-js/sdk";
import { ExtendedAgentCardNotConfiguredError, RequestMalformedError } from "@a2a-js/sdk/errors";
import type { A2ARequestHandler, ServerCallContext, User } from "@a2a-js/sdk/server";
import type { AgentIdentity } from "../agents/token-service.js";
import { AppError } from "../errors.js";
import { listQuery, pageToken, toTask, updatePayloads } from "./sdk-mapping.js";
import type { TaskService } from "./task-service.js";

/** The caller of an A2A method: an agent, authenticated by its Butler token. */
export class AgentUser implements User {
  constructor(readonly identity: AgentIdentity) {}
  get isAuthenticated(): boolean {
    return true;
  }
  get userName(): string {
    return `${this.identity.project}/${this.identity.agent}`;
  }
}

function ownerOf(ctx: ServerCallContext): AgentIdentity {
  const user = ctx.user;
  // The route authenticates every call before it reaches the handler; this is a second lock.
  if (!(user instanceof AgentUser)) throw new AppError("UNAUTHENTICATED", "an agent token is required");
  return user.identity;
}

/** Where a call's context carries the signal that ends its streams. */
const SIGNAL = "butler.signal";

/**
 * Ties a call to the signal that ends its stream (the route's: client gone, or server stopping),
 * in the call context's own state, which the SDK hands to the handler unchanged.
 */
export function bindSignal(ctx: ServerCallContext, signal: AbortSignal): void {
  ctx.state.set(SIGNAL, signal);
}

const signalOf = (ctx: ServerCallContext): AbortSignal => {
  const signal = ctx.state.get(SIGNAL);
  return signal instanceof AbortSignal ? signal : new AbortController().signal;
};

/**
 * The A2A SDK's request handler over the task service: it translates the SDK's requests into use
 * cases and their results into the SDK's types, and decides nothing. Faults the service throws are
 * turned into A2A errors by the route's guard (rpc-guard.ts).
 */
export function createSdkHandler(tasks: TaskService, card: () => AgentCard): A2ARequestHandler {
  return {
    getAgentCard: async () => card(),
    async getAuthenticatedExtendedAgentCard() {
      throw new ExtendedAgentCardNotConfiguredError("this agent has no extended agent card");
    },
    async sendMessage(params, ctx) {
      const row = await tasks.start(
        ownerOf(ctx),
        params.message,
        params.configuration?.taskPushNotificationConfig,
      );
      return toTask(row.task, params.configuration?.historyLength);
    },
    async *sendMessageStream(params, ctx) {
      const row = await tasks.start(
        ownerOf(ctx),
        params.message,
        params.configuration?.taskPushNotificationConfig,
      );
      // The task is already waiting for people (an interrupted state) or finished: the stream
      // ends here, and SubscribeToTask (or a push) carries what happens next.
      yield { payload: { $case: "task", value: toTask(row.task, params.configuration?.historyLength) } };
    },
    async getTask(params, ctx) {
      return toTask((await tasks.read(ownerOf(ctx), params.id)).task, params.historyLength);
    },
    async cancelTask(params, ctx) {
      return toTask((await tasks.cancel(ownerOf(ctx), params.id)).task);
    },
    async *resubscribe(params, ctx) {
      for await (const { row, previous } of tasks.follow(ownerOf(ctx), params.id, signalOf(ctx))) {
        const t = toTask(row.task);
        if (!previous) yield { payload: { $case: "task", value: t } };
        else
          for (const payload of updatePayloads(t, row.grantState !== previous.grantState)) yield { payload };
      }
    },
    async listTasks(params: ListTasksRequest, ctx): Promise<ListTasksResponse> {
      const owner = ownerOf(ctx);
      const query = listQuery(params);
      if (!query.ok) throw new RequestMalformedError(query.error);
      const { pageSize } = query.value;
      const { rows, total } = await tasks.list(owner, query.value);
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      return {
        tasks: page.map((r) => toTask(r.task, params.historyLength, params.includeArtifacts ?? false)),
        nextPageToken: rows.length > pageSize && last ? pageToken(last) : "",
        pageSize,
        totalSize: total,
      };
    },
    createTaskPushNotificationConfig: async (params, ctx) => tasks.savePushConfig(ownerOf(ctx), params),
    getTaskPushNotificationConfig: async (params, ctx) =>
      tasks.pushConfig(ownerOf(ctx), params.taskId, params.id),
    async listTaskPushNotificationConfigs(params, ctx): Promise<ListTaskPushNotificationConfigsResponse> {
      return { configs: await tasks.pushConfigs(ownerOf(ctx), params.taskId), nextPageToken: "" };
    },
    async deleteTaskPushNotificationConfig(params, ctx) {
      await tasks.deletePushConfig(ownerOf(ctx), params.taskId, params.id);
    },
  };
}
