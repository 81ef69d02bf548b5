import type { OutboxHandler } from "../outbox/outbox.js";
import type { A2AService } from "./a2a-service.js";
import { PushRefused, sendPush } from "./push-sender.js";

/**
 * The outbox handler that sends task updates to the receivers agents chose. It runs on its own
 * worker, so that a slow receiver delays only other pushes, never decisions reaching agents or
 * cards reaching approvers. A push the allowlist or the receiver's address refuses is audited and
 * not retried; a failed send is.
 */
export function pushHandler(
  a2a: Pick<A2AService, "pushTarget">,
  allowlist: readonly string[],
): { "a2a.push": OutboxHandler<"a2a.push"> } {
  return {
    async "a2a.push"(payload) {
      const target = await a2a.pushTarget(payload.configId);
      const details = { task_id: payload.taskId, state: payload.state, config_id: payload.configId };
      // The agent deleted the config meanwhile: nothing to send.
      if (!target) return undefined;
      const host = new URL(target.url).host;
      try {
        const status = await sendPush(target, payload.event, allowlist);
        return { auditType: "a2a.pushed", details: { ...details, host, status } };
      } catch (e) {
        if (!(e instanceof PushRefused)) throw e;
        return { auditType: "a2a.push_refused", reason: e.message, details: { ...details, host } };
      }
    },
  };
}
