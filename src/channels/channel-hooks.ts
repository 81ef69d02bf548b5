import type { AuditLog } from "../audit/audit-log.js";
import { redeemLinkCode } from "../butler/approver-directory.js";
import type { ButlerDeps } from "../butler/context.js";
import { mendText } from "../http/validation.js";
import type { Logger } from "../logger.js";
import type { ApprovalChannel, ChannelHooks } from "./channel.js";

/** Builds an approval surface once the services it reports to exist. */
export type ChannelAdapter = (hooks: ChannelHooks) => ApprovalChannel;

/**
 * What the chat adapters report back: refused and ignored requests go to the audit log, link codes
 * to the approver directory. Needs only the audit log and the directory's tables, so adapters are
 * built after these and before the Butler (which needs to know their kinds).
 */
export function channelHooks(
  deps: Pick<ButlerDeps, "db" | "clock" | "policies"> & {
    audit: Pick<AuditLog, "append" | "appendInTx">;
    log: Logger;
    /** Security alerts' buttons (the service is made after the adapters: called late). */
    alertAction: ChannelHooks["alertAction"];
  },
): ChannelHooks {
  return {
    async rejected(channel, reason, details) {
      await deps.audit.append({ type: `${channel}.request_rejected`, reason, details });
    },
    async ignored(channel, reason, details) {
      await deps.audit.append({ type: `${channel}.request_ignored`, reason, details });
    },
    // The platform's text is mended, never refused (see mendText): it would only be sent again.
    redeemLink: (code, channel, userId) => redeemLinkCode(deps, mendText(code), channel, mendText(userId)),
    // Whatever fails, the presser is answered (a Telegram button would spin, Slack would say nothing).
    alertAction: (input) =>
      deps.alertAction(input).catch((e: unknown) => {
        deps.log.error({ err: e, alert: input.alertId }, "a security alert's button could not be handled");
        return {
          ok: false as const,
          code: "UNAVAILABLE" as const,
          message: "Butler could not do that just now; press again in a moment.",
        };
      }),
  };
}
