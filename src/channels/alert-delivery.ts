import { createHmac } from "node:crypto";
import type { AlertDelivery } from "../gateway/alerts.js";
import type { OutboxHandler } from "../outbox/outbox.js";
import { RetryLater } from "../outbox/retry-later.js";
import type { ApprovalChannel } from "./channel.js";

/**
 * What the signed text starts with: a signature made for an alert can never pass as another
 * protocol's (a Stripe webhook signed `t.body`), whichever secret the policy names.
 */
export const SIGNING_CONTEXT = "butler-security-alert.";

/** How long the outgoing webhook may take to answer. */
const WEBHOOK_TIMEOUT_MS = 10_000;

/**
 * The outbox handler that sends security alerts: to one Slack channel or Telegram chat (the
 * project's `security:` rooms), or to the outgoing webhook, as JSON signed when a secret is set
 * (`Butler-Signature: t=<unix seconds>,v1=<HMAC-SHA256 hex of "butler-security-alert.<t>.<body>">`).
 */
export function alertHandler(deps: {
  channels: readonly ApprovalChannel[];
  credential: (name: string) => Promise<string | undefined>;
  now: () => Date;
  fetch?: typeof fetch;
}): { "security.alert": OutboxHandler<"security.alert"> } {
  return {
    async "security.alert"(d: AlertDelivery) {
      const { alert } = d;
      const delivered = {
        auditType: "security.alert_sent",
        project: alert.project,
        agent: alert.agent,
        details: {
          alert_id: alert.id,
          channel: d.channel,
          ...(d.channel === "webhook" ? {} : { target: d.target }),
        },
      };
      if (d.channel === "webhook") {
        const refused = await postWebhook(deps, d.url, d.secret, alert);
        return refused ? { ...delivered, auditType: "security.alert_refused", reason: refused } : delivered;
      }
      const channel = deps.channels.find((c) => c.kind === d.channel);
      if (!channel?.postAlert) throw new Error(`channel ${d.channel} is not configured`);
      const result = await channel.postAlert(alert, d.target);
      const failed = result.failed[0];
      if (failed)
        throw failed.retryAfterMs
          ? new RetryLater(`${failed.target}: ${failed.error}`, failed.retryAfterMs)
          : new Error(`${failed.target}: ${failed.error}`);
      return delivered;
    },
  };
}

/** Sends the alert; undefined once taken, or why the receiver refused it for good. Throws to retry. */
async function postWebhook(
  deps: { credential: (name: string) => Promise<string | undefined>; now: () => Date; fetch?: typeof fetch },
  url: string,
  secretName: string | undefined,
  alert: AlertDelivery["alert"],
): Promise<string | undefined> {
  const body = JSON.stringify({
    type: "security.alert",
    alert_id: alert.id,
    kind: alert.kind,
    project: alert.project,
    agent: alert.agent,
    title: alert.title,
    facts: alert.facts,
    event_ids: alert.eventIds,
    at: alert.at,
    url: alert.url,
  });
  const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "butler" };
  if (secretName) {
    const secret = await deps.credential(secretName);
    // Fail closed: an alert meant to be signed is never sent unsigned.
    if (!secret) throw new Error(`set ${secretName} on the server to sign security alerts`);
    const t = Math.floor(deps.now().getTime() / 1000);
    headers["butler-signature"] =
      `t=${t},v1=${createHmac("sha256", secret).update(`${SIGNING_CONTEXT}${t}.${body}`).digest("hex")}`;
  }
  // A network failure's text may quote the URL: only its code is kept (stored and audited).
  const res = await (deps.fetch ?? fetch)(url, {
    method: "POST",
    headers,
    body,
    redirect: "manual",
    signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
  }).catch((e: unknown) => {
    const code =
      (e as { cause?: { code?: unknown }; name?: unknown }).cause?.code ?? (e as { name?: unknown }).name;
    throw new Error(
      `the security webhook could not be reached (${typeof code === "string" ? code : "network error"})`,
    );
  });
  await res.body?.cancel().catch(() => undefined);
  if (res.ok) return undefined;
  const message = `the security webhook answered ${res.status}`;
  // A redirect (not followed) or a 4xx other than 408 and 429 will not change with time: final.
  if (
    (res.status >= 300 && res.status < 400) ||
    (res.status >= 400 && res.status < 500 && ![408, 429].includes(res.status))
  )
    return message;
  const after = Number(res.headers.get("retry-after"));
  throw Number.isFinite(after) && after > 0 ? new RetryLater(message, after * 1000) : new Error(message);
}
