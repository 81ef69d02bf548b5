import { ButlerClient } from "butler-gateway/client";

/**
 * The seed scenario's agent, billing-reconciler-1: it wants yesterday's Stripe charges. Butler
 * denies it (Stripe is not in project-billing's policy), so it asks over A2A with the denial's
 * event id, waits to be told that a person approved, retries, and reads the charges through the
 * gateway's Stripe proxy. It holds only its Butler token: the Stripe key stays with Butler.
 */
export async function reconcile(opts: {
  butlerUrl: string;
  token: string;
  say: (line: string) => void;
}): Promise<{ id: string; amount: number }[]> {
  const butler = new ButlerClient({ url: opts.butlerUrl, token: opts.token });
  let told = "";
  return butler.withAccess(
    {
      action: "stripe:charges:read",
      resource: "stripe.com/v1/charges",
      reason: "need read-only Stripe charges for ledger reconciliation",
      ttl: "PT24H",
    },
    async () => {
      // What an unmodified Stripe SDK does with its host set to the gateway.
      const res = await fetch(`${opts.butlerUrl}/v1/proxy/stripe/v1/charges?limit=3`, {
        headers: { authorization: `Bearer ${opts.token}` },
      });
      if (!res.ok) throw new Error(`the gateway answered HTTP ${res.status}: ${await res.text()}`);
      const page = (await res.json()) as { data: { id: string; amount: number }[] };
      return page.data;
    },
    {
      onDecision(d, attempt) {
        opts.say(
          `${attempt === "first" ? "asks" : "retries"}: ${d.decision} (${d.reason}; audit event ${d.event_id})`,
        );
        if (d.decision === "DENY")
          opts.say("files an access request over A2A, scoped to that denial, and waits");
      },
      onUpdate(task) {
        const part = task.status?.message?.parts[0]?.content;
        const text = part?.$case === "text" ? part.value : "";
        if (text && text !== told) opts.say(`A2A task ${task.id}: ${text}`);
        told = text;
      },
    },
  );
}
