import { createHash } from "node:crypto";
import type { AgentIdentity } from "../agents/token-service.js";
import { AppError } from "../errors.js";
import type { EventSubject } from "../gateway/behaviour.js";
import { DRIFT_RANK } from "../policy/drift.js";
import { describeViolations } from "../policy/pact.js";
import type { PipelineContext, ProviderAnswer, ProviderCall } from "./call-types.js";
import { valueAtPath } from "./params.js";
import type { Reaction, WebhookSubject } from "./spec.js";
import { verifyWebhook } from "./webhooks.js";

/** What the provider is answered for a webhook. */
export interface WebhookReceipt {
  event_id: string | null;
  event_type: string | null;
  /** A replay of an event already received: nothing ran again (or, resumed, its unfinished reactions did). */
  duplicate: boolean;
  reactions: { name: string; status: number }[];
}

/** A signed webhook body, read: the event (empty when not a JSON object), its ids and its dedup key. */
interface ReadEvent {
  event: Record<string, unknown>;
  eventId: string | null;
  eventType: string | null;
  bodySha: string;
  /** The key it is processed once under. */
  key: string;
}

/** Reads a signed body (pure). */
function readEvent(body: string): ReadEvent {
  let event: Record<string, unknown> = {};
  try {
    const j = JSON.parse(body) as unknown;
    if (j && typeof j === "object" && !Array.isArray(j)) event = j as Record<string, unknown>;
  } catch {
    /* a signed body that is not JSON is still recorded */
  }
  const str = (v: unknown) => (typeof v === "string" ? v.slice(0, 128) : null);
  const data = (event.data ?? {}) as Record<string, unknown>;
  const bodySha = createHash("sha256").update(body).digest("hex");
  // Each event is processed once. Its key: the provider's own event id when the signed body has
  // one at the top level (Stripe's evt_…, the same on every retry); otherwise the body's hash
  // (Revolut's events have no id of their own, and data.id is the transaction's, shared by its
  // events; a retry sends the same body).
  const key =
    typeof event.id === "string" && /^[\x21-\x7e]{1,255}$/.test(event.id)
      ? `id:${event.id}`
      : typeof event.id === "string" && event.id.length > 0
        ? `id-sha256:${createHash("sha256").update(event.id).digest("hex")}`
        : `sha256:${bodySha}`;
  return {
    event,
    eventId: str(event.id) ?? str(data.id),
    eventType: str(event.type) ?? str(event.event),
    bodySha,
    key,
  };
}

/** The subject's resource, its `{path}` placeholders filled from the event; undefined when one is missing (pure). */
function subjectResource(template: string, event: Record<string, unknown>): string | undefined {
  let missing = false;
  const filled = template.replace(/\{([A-Za-z_][A-Za-z0-9_.]*)\}/g, (_, path: string) => {
    const v = valueAtPath(event, path);
    if ((typeof v === "string" && /^[^\s/]{1,128}$/.test(v)) || typeof v === "number") return String(v);
    missing = true;
    return "";
  });
  return missing ? undefined : filled;
}

/** What of the event counts for its agent's behaviour (pure). */
function observed(subject: WebhookSubject, read: ReadEvent, provider: string, lineId: string) {
  const resource = subjectResource(subject.resource, read.event);
  if (resource === undefined) return undefined;
  const mcc = subject.merchantCategory ? valueAtPath(read.event, subject.merchantCategory) : undefined;
  const amount = subject.amount ? valueAtPath(read.event, subject.amount.field) : undefined;
  const currency = subject.amount ? valueAtPath(read.event, subject.amount.currencyField) : undefined;
  return {
    provider,
    eventType: read.eventType,
    eventLineId: lineId,
    resource,
    // A merchant category is four digits (ISO 18245); anything else is no category.
    merchantCategory:
      (typeof mcc === "string" || typeof mcc === "number") && /^\d{4}$/.test(String(mcc))
        ? String(mcc)
        : undefined,
    amount:
      // A refund or reversal (a negative amount) moves no money out: not an amount here.
      typeof amount === "number" &&
      Number.isFinite(amount) &&
      amount > 0 &&
      typeof currency === "string" &&
      /^[A-Za-z]{3}$/.test(currency)
        ? { amount, currency: currency.toUpperCase() }
        : undefined,
  };
}

/** Whether the event's agent meets a reaction's conditions on it (none: always) (pure). */
function subjectAllows(r: Reaction, s: EventSubject | undefined): boolean {
  if (r.drift === undefined && r.trustBelow === undefined && r.pactViolated === undefined) return true;
  if (!s) return false;
  if (r.drift !== undefined && DRIFT_RANK[s.level] < DRIFT_RANK[r.drift]) return false;
  if (r.trustBelow !== undefined && !(s.trust !== undefined && s.trust < r.trustBelow)) return false;
  if (r.pactViolated !== undefined && r.pactViolated !== s.violations.length > 0) return false;
  return true;
}

/** The reactions an event calls for (pure). */
function reactionsTo(reactions: readonly Reaction[], read: ReadEvent): Reaction[] {
  return reactions.filter((r) => {
    if (read.eventType !== r.event) return false;
    if (r.field === undefined) return true;
    const v = valueAtPath(read.event, r.field);
    return r.in?.some((x) => String(x) === String(v)) ?? false;
  });
}

/** A reaction's params: `{path}` values taken from the event, others as written (pure). */
function reactionParams(r: Reaction, event: Record<string, unknown>): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r.params)) {
    const m = typeof v === "string" ? /^\{([A-Za-z_][A-Za-z0-9_.]*)\}$/.exec(v) : null;
    params[k] = m ? valueAtPath(event, m[1]!) : v;
  }
  return params;
}

/**
 * An inbound webhook: the signature is checked with the provider's scheme before anything
 * else; a good one is recorded in the audit chain, a bad one is refused (and audited). Reactions
 * go through `call`, the same pipeline as any agent's call.
 */
export async function receiveWebhook(
  ctx: PipelineContext,
  call: (identity: AgentIdentity, c: ProviderCall) => Promise<ProviderAnswer>,
  provider: string,
  headers: Record<string, string | string[] | undefined>,
  body: string,
): Promise<WebhookReceipt> {
  const spec = ctx.providers.providers.get(provider);
  if (!spec?.webhooks) throw new AppError("NOT_FOUND", `provider '${provider}' takes no webhooks`);
  const secret = await ctx.credential(spec.webhooks.secret);
  if (!secret)
    throw new AppError(
      "UNAVAILABLE",
      `set ${spec.webhooks.secret} on the server to receive ${provider} webhooks`,
    );
  const { scheme, toleranceSeconds } = spec.webhooks;
  const checked = verifyWebhook(scheme, secret, headers, body, ctx.clock.now().getTime(), toleranceSeconds);
  if (!checked.ok) {
    await ctx.audit.append({ type: "webhook.rejected", reason: checked.error, details: { provider } });
    throw new AppError("INVALID_INPUT", `webhook refused: ${checked.error}`);
  }
  const read = readEvent(body);
  const out = { event_id: read.eventId, event_type: read.eventType };
  const candidates = reactionsTo(spec.webhooks.reactions, read);
  const claim = await ctx.webhookEvents.claim({
    provider,
    key: read.key,
    // An event counted for its agent is held under a lease like one with reactions: if counting
    // fails (503), the provider's next delivery takes it up again instead of seeing a duplicate.
    hasReactions: candidates.length > 0 || spec.webhooks.subject !== undefined,
    // event_id is the audit line's own: the provider's ids are recorded under their own names.
    details: {
      provider,
      provider_event_id: read.eventId,
      provider_event_type: read.eventType,
      body_sha256: read.bodySha,
    },
  });
  // A replay (within the signature's tolerance, or the provider's own retry): answered 200 so
  // that the provider stops, recorded as a duplicate, and nothing runs again.
  if (claim.status === "duplicate") return { ...out, duplicate: true, reactions: [] };
  // The first delivery counts the event for its agent; a resumed one (the first died) only
  // assesses it again from what is stored, so that its reactions' conditions still hold.
  let subject: EventSubject | undefined;
  try {
    subject = await observeSubject(
      ctx,
      spec.webhooks.subject,
      read,
      provider,
      claim.eventId,
      claim.status === "new",
    );
  } catch (e) {
    await ctx.webhookEvents.release(provider, read.key).catch(() => undefined);
    throw e;
  }
  const reactionsFor = candidates.filter((r) => subjectAllows(r, subject));
  if (claim.status === "new" && (!claim.react || reactionsFor.length === 0)) {
    if (claim.react) await ctx.webhookEvents.reacted(provider, read.key);
    await alert(ctx, provider, read, claim.eventId, subject, []);
    return { ...out, duplicate: false, reactions: [] };
  }
  // Reactions go through the same pipeline as any agent's call, as the configured actor. Their
  // idempotency keys come from the event, so a run resumed after a crash cannot act twice.
  const first = claim.status === "resumed" ? (claim.firstEventId ?? claim.eventId) : claim.eventId;
  const eventDigest = createHash("sha256").update(`${provider}\n${read.key}`).digest("hex").slice(0, 32);
  const reactions: { name: string; status: number; eventId?: string; operation?: string }[] = [];
  for (const r of reactionsFor) {
    const actor = { agent: r.actor.agent, project: r.actor.project, tokenId: `webhook:${first}` };
    try {
      const a = await call(actor, {
        provider: spec.name,
        operation: r.operation,
        params: reactionParams(r, read.event),
        via: `reaction ${r.name}`,
        idempotencyKey: `webhook-${eventDigest}-${r.name}`,
      });
      reactions.push({ name: r.name, status: a.status, eventId: a.eventId, operation: r.operation });
    } catch (e) {
      ctx.log.warn({ err: e, reaction: r.name }, "webhook reaction failed");
      reactions.push({ name: r.name, status: e instanceof AppError ? 400 : 500 });
    }
  }
  await ctx.webhookEvents.reacted(provider, read.key);
  await alert(ctx, provider, read, claim.eventId, subject, reactions);
  return {
    ...out,
    duplicate: claim.status === "resumed",
    reactions: reactions.map(({ name, status }) => ({ name, status })),
  };
}

/**
 * Counts the event for the agent it is about (webhooks.subject), or with `count` false assesses it
 * only. A failure fails closed: the provider is answered 503 and its retry, once the claim's lease
 * ran out, resumes the reactions with the event assessed again (never run without their conditions).
 */
async function observeSubject(
  ctx: PipelineContext,
  subject: WebhookSubject | undefined,
  read: ReadEvent,
  provider: string,
  lineId: string,
  count: boolean,
): Promise<EventSubject | undefined> {
  if (!subject || !ctx.behaviour) return undefined;
  if (subject.events && !(read.eventType && subject.events.includes(read.eventType))) return undefined;
  const event = observed(subject, read, provider, lineId);
  if (!event) return undefined;
  try {
    return await ctx.behaviour.observeEvent(event, count);
  } catch (e) {
    ctx.log.error({ err: e, provider }, "a webhook event could not be counted for its agent");
    throw new AppError("UNAVAILABLE", "the event could not be processed just now; send it again");
  }
}

/**
 * The security alert of an event: its agent's pact broken, its merchant categories drifting
 * majorly, or reactions run; one alert with all the evidence, to the project's security room.
 */
async function alert(
  ctx: PipelineContext,
  provider: string,
  read: ReadEvent,
  lineId: string,
  s: EventSubject | undefined,
  reactions: readonly { name: string; status: number; eventId?: string; operation?: string }[],
): Promise<void> {
  const kind =
    s && s.violations.length > 0
      ? ("pact_violation" as const)
      : s?.level === "major"
        ? ("drift_major" as const)
        : reactions.length > 0
          ? ("reaction" as const)
          : undefined;
  // Alerts are about an agent (its buttons act on it): an event without one raises none.
  const who = s;
  if (!ctx.alerts || !kind || !who) return;
  const event = `${provider} ${read.eventType ?? "event"}${read.eventId ? ` ${read.eventId}` : ""}`;
  const facts = [
    ...(s && s.violations.length > 0 ? [describeViolations(s.agent, s.violations)] : []),
    ...(s?.drift
      ? [
          `merchant-category drift: ${s.drift.level}${s.drift.newValues.length > 0 ? ` (new: ${s.drift.newValues.join(", ")})` : ""}, Jaccard distance ${s.drift.jaccard}, Jensen-Shannon divergence ${s.drift.jensenShannon}, ${s.drift.baselineCalls} payments in the baseline, ${s.drift.recentCalls} recent`,
        ]
      : []),
    ...(s?.trust !== undefined ? [`trust score now ${s.trust}`] : []),
    ...reactions.map((r) => `reaction ${r.name}: ${provider} ${r.operation ?? "call"} answered ${r.status}`),
  ];
  const title =
    kind === "pact_violation"
      ? `${who.agent}: ${event} breaks its pact`
      : kind === "drift_major"
        ? `${who.agent}: ${event} is major drift`
        : `${event}: ${reactions.map((r) => r.name).join(", ")} ran`;
  try {
    await ctx.alerts.raise({
      kind,
      project: who.project,
      agent: who.agent,
      title,
      facts,
      eventIds: [lineId, ...(s?.eventIds ?? []), ...reactions.flatMap((r) => (r.eventId ? [r.eventId] : []))],
    });
  } catch (e) {
    ctx.log.error({ err: e, provider }, "a security alert could not be raised");
  }
}
