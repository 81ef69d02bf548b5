import type { PolicySimulation, SimulatedCall } from "../admin/policy-simulation.js";
import type { AuditLine } from "../audit/chain.js";
import type { ApprovalCard } from "../butler/approval-card.js";
import type { AccessRequestView, GrantView } from "../butler/butler-service.js";
import { approvalsLine, outcomeLine, shorterTtlSeconds } from "../channels/render.js";
import { REQUEST_STATUSES } from "../db/schema.js";
import { escapeHtml } from "../http/escape-html.js";

/**
 * The dashboard's pages, rendered on the server (pure: data in, HTML out). Every interpolated
 * value is escaped unless it is markup this module built itself, so agent-written text (reasons,
 * resources, parameters) is always text. The pages need no inline script or style: the strict
 * Content-Security-Policy allows only /dashboard/assets.
 */

/** Markup built here; everything else is escaped when interpolated. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

type Value = Html | string | number | null | undefined | false | readonly Value[];

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return "";
  if (v instanceof Html) return v.value;
  if (Array.isArray(v)) return v.map(render).join("");
  return escapeHtml(String(v));
}

/** A template whose interpolations are escaped (arrays are joined; Html is kept). */
export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** A time in UTC that the page's script shows in the viewer's zone, with UTC on hover. */
export function time(iso: string | null | undefined): Html {
  if (!iso) return html`<span>never</span>`;
  return html`<time datetime="${iso}" title="${iso}">${iso.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC")}</time>`;
}

/** A duration for people: "2 d 3 h", "23 h 59 min", "4 min", "12 s". */
export function humanDuration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
  if (m > 0) return `${m} min`;
  return `${Math.max(0, Math.floor(seconds))} s`;
}

export interface Viewer {
  approver: string;
  role: "approver" | "auditor";
  csrf: string;
}

const NAV = [
  ["requests", "/dashboard", "Requests"],
  ["timeline", "/dashboard/timeline", "Live timeline"],
  ["grants", "/dashboard/grants", "Grants"],
  ["history", "/dashboard/history", "History"],
  ["policies", "/dashboard/policies", "Policies"],
  ["audit", "/dashboard/audit", "Audit"],
] as const;

export function page(title: string, viewer: Viewer | undefined, active: string, body: Html): string {
  return `<!doctype html>${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Butler</title>
${viewer ? html`<meta name="csrf-token" content="${viewer.csrf}">` : ""}
<link rel="stylesheet" href="/dashboard/assets/dashboard.css">
<script src="/dashboard/assets/dashboard.js" defer></script>
</head>
<body>
<header class="top">
  <a class="brand" href="/dashboard">Butler</a>
  ${
    viewer
      ? html`<nav aria-label="Sections">${NAV.map(
          ([key, href, label]) =>
            html`<a href="${href}"${key === active ? html` aria-current="page"` : ""}>${label}</a>`,
        )}</nav>
  <form class="who" method="post" action="/dashboard/sign-out">
    <input type="hidden" name="_csrf" value="${viewer.csrf}">
    <span>${viewer.approver} <small>(${viewer.role})</small></span>
    <button type="submit">Sign out</button>
  </form>`
      : ""
  }
</header>
<main id="main">
<h1>${title}</h1>
${body}
</main>
</body>
</html>`}`;
}

export function signInPage(opts: {
  error?: string | undefined;
  code?: string | undefined;
  next?: string | undefined;
}): string {
  const error = opts.error ? html`<p class="error" role="alert">${opts.error}</p>` : "";
  const next = opts.next ? html`<input type="hidden" name="next" value="${opts.next}">` : "";
  const body = opts.code
    ? html`${error}<form method="post" action="/dashboard/sign-in/link" class="card">
  <p>This one-time link signs you in once. It stops working after use.</p>
  <input type="hidden" name="code" value="${opts.code}">${next}
  <button type="submit" class="primary">Sign in</button>
</form>`
    : html`${error}<form method="post" action="/dashboard/sign-in" class="card">
  <label for="token">Your approver's or auditor's token</label>
  <input id="token" name="token" type="password" autocomplete="off" required placeholder="bap_… or bau_…">${next}
  <p class="hint">Made with <code>butler approvers token &lt;you&gt;</code> or <code>butler auditors token &lt;you&gt;</code>.</p>
  <button type="submit" class="primary">Sign in</button>
</form>`;
  return page("Sign in", undefined, "", body);
}

/** A unified diff, line by line (exported for the policies page), with added and removed lines marked (not by colour alone). */
export function diffBlock(diff: string): Html {
  const lines = diff.split("\n").map((l) => {
    const kind =
      l.startsWith("+++") || l.startsWith("---")
        ? "file"
        : l.startsWith("+")
          ? "add"
          : l.startsWith("-")
            ? "del"
            : l.startsWith("@@")
              ? "hunk"
              : "ctx";
    // Block spans make the lines; a newline between them would double the spacing.
    return html`<span class="d-${kind}">${l || " "}</span>`;
  });
  return html`<pre class="diff" tabindex="0" aria-label="Proposed change">${lines}</pre>`;
}

/** One request as a card: the facts, the agent's reason (as text), the change, and the buttons. */
export function requestCard(card: ApprovalCard, viewer: Viewer, canDecide: boolean): Html {
  const outcome = outcomeLine(card);
  const shorter = shorterTtlSeconds(card);
  const id = card.requestId;
  const buttons =
    card.status === "pending" && canDecide
      ? html`<div class="actions">
  <form method="post" action="/dashboard/requests/${id}/approve" data-action="approve">
    <input type="hidden" name="_csrf" value="${viewer.csrf}">
    <button type="submit" class="primary">Approve${card.oneShot ? " once" : ""}</button>
  </form>
  ${
    shorter && !card.oneShot
      ? html`<form method="post" action="/dashboard/requests/${id}/approve" data-action="approve">
    <input type="hidden" name="_csrf" value="${viewer.csrf}">
    <input type="hidden" name="ttl" value="${shorter}">
    <button type="submit">Approve for ${humanDuration(shorter)}</button>
  </form>`
      : ""
  }
  <form method="post" action="/dashboard/requests/${id}/deny" data-action="deny" class="deny">
    <input type="hidden" name="_csrf" value="${viewer.csrf}">
    <label for="why-${id}">Reason (sent to the agent)</label>
    <input id="why-${id}" name="reason" maxlength="1000" placeholder="optional">
    <button type="submit" class="danger">Deny</button>
  </form>
</div>`
      : card.status === "approved" && !card.oneShot && !card.rememberedTo && !card.breakGlassBy && canDecide
        ? html`<div class="actions"><form method="post" action="/dashboard/requests/${id}/remember" data-action="remember">
    <input type="hidden" name="_csrf" value="${viewer.csrf}">
    <button type="submit">Remember as a permanent rule${card.rememberedBy.length ? html` (asked by ${card.rememberedBy.join(", ")}; ${card.approvalsRequired} needed)` : ""}</button>
  </form></div>`
        : card.status === "pending"
          ? html`<p class="note">${viewer.role === "auditor" ? "Auditors can read, not decide." : `You are not an approver of ${card.project} for ${card.riskTier}-risk requests.`}</p>`
          : "";
  return html`<article class="request status-${card.status}" id="req-${id}" data-id="${id}" data-status="${card.status}">
<header>
  <h2><span class="agent">${card.agent}</span> asks for <code>${card.action}</code></h2>
  <span class="badge tier-${card.riskTier}">${card.riskTier} risk</span>
  ${card.oneShot ? html`<span class="badge one-shot">one call, once</span>` : ""}
</header>
<dl class="facts">
  <dt>Project</dt><dd>${card.project}</dd>
  <dt>Resource</dt><dd><code>${card.resource || "(none)"}</code></dd>
  ${card.resourcePattern ? html`<dt>The grant asks for</dt><dd><code>${card.resourcePattern}</code> <small>(a pattern)</small></dd>` : ""}
  ${card.branch ? html`<dt>Branch</dt><dd><code>${card.branch}</code></dd>` : ""}
  <dt>Approvals</dt><dd class="approvals">${approvalsLine(card)}${card.approvedBy.length ? html` (${card.approvedBy.join(", ")})` : ""}</dd>
  <dt>${card.oneShot ? "Valid for" : "Grant TTL"}</dt><dd>${humanDuration(card.requestedTtlSeconds)} <small>(at most ${humanDuration(card.maxTtlSeconds)})</small></dd>
  ${card.status === "pending" ? html`<dt>Decide by</dt><dd class="deadline"><time datetime="${card.requestExpiresAt}">${card.requestExpiresAt.replace(/\.\d{3}Z$/, "Z")}</time> <small>(the request expires then)</small></dd>` : ""}
  <dt>Request</dt><dd><code>${id}</code></dd>
</dl>
<section class="reason" aria-label="Reason written by the agent">
  <h3>Reason <small>(written by the agent, unverified)</small></h3>
  <p class="agent-text">${card.reason}</p>
</section>
${card.blastRadius.length > 0 ? html`<section class="blast-radius" aria-label="What the grant would allow"><h3>If approved, the grant allows</h3><ul>${card.blastRadius.map((f) => html`<li>${f}</li>`)}</ul>${card.pastDenials.length > 0 ? html`<p>Past denials it would have allowed: ${card.pastDenials.map((d, i) => html`${i > 0 ? ", " : ""}<a href="/dashboard/audit?event=${d.eventId}">${d.eventId}</a>`)}</p>` : ""}</section>` : ""}
<h3>${card.oneShot ? "Exactly this call, once" : "Policy change"}</h3>
${diffBlock(card.diff)}
${outcome ? html`<p class="outcome" role="status"><strong>${outcome}</strong></p>` : ""}
${buttons}
</article>`;
}

export function requestsPage(cards: Html[], viewer: Viewer): string {
  return page(
    "Access requests",
    viewer,
    "requests",
    html`<p class="lede">Pending requests and the ones decided in the last hour. Updates arrive live.</p>
<section id="requests" data-live="requests" aria-live="polite">${requestsFragment(cards)}</section>`,
  );
}

/** One request's page (a chat card's "Full proposal" link). */
export function requestPage(card: Html, viewer: Viewer, id: string): string {
  return page(
    `Request ${id}`,
    viewer,
    "requests",
    html`<p class="lede"><a href="/dashboard">All pending requests</a></p>
<section id="requests">${card}</section>`,
  );
}

export function requestsFragment(cards: Html[]): Html {
  return cards.length ? html`${cards}` : html`<p class="empty">Nothing is waiting for a decision.</p>`;
}

/** One audit line on the timeline: the core fields (no hashes), and the request or grant it is about. */
export type TimelineEvent = Pick<
  AuditLine,
  "seq" | "event_id" | "ts" | "type" | "agent" | "project" | "action" | "resource" | "decision" | "reason"
> & { request_id?: string | undefined; grant_id?: string | undefined };

export function timelineItem(e: TimelineEvent): Html {
  return html`<li class="ev type-${e.type.replace(/[^a-z0-9_]/gi, "-")}" data-seq="${e.seq}">
  ${time(e.ts)} <span class="etype">${e.type}</span>
  ${e.agent ? html`<span class="agent">${e.agent}</span>` : ""}
  ${e.action ? html`<code>${e.action}</code>` : ""}
  ${e.decision ? html`<span class="decision d-${e.decision}">${e.decision}</span>` : ""}
  ${e.reason ? html`<span class="ereason">${e.reason}</span>` : ""}
  <a class="eid" href="/dashboard/audit?event=${e.event_id}">#${e.seq}</a>
</li>`;
}

export function timelinePage(
  events: TimelineEvent[],
  viewer: Viewer,
  filter: { agent?: string | undefined; project?: string | undefined },
): string {
  const last = events.length ? events[events.length - 1]!.seq : 0;
  return page(
    "Live timeline",
    viewer,
    "timeline",
    html`<form class="filters" method="get" action="/dashboard/timeline">
  <label>Agent <input name="agent" value="${filter.agent ?? ""}"></label>
  <label>Project <input name="project" value="${filter.project ?? ""}"></label>
  <button type="submit">Show</button>
</form>
<p class="lede">Every step as it is written to the audit chain: denials, requests, proposals, approvals, grants, notifications, retries, expiries.${filter.agent ? html` <a href="/dashboard/replay?agent=${filter.agent}${filter.project ? `&project=${filter.project}` : ""}">Replay ${filter.agent}'s session as a story</a>` : ""}</p>
<ol id="timeline" class="timeline" data-live="timeline" data-after="${last}" data-agent="${filter.agent ?? ""}" data-project="${filter.project ?? ""}" aria-live="polite">${events.map(timelineItem)}</ol>`,
  );
}

export function grantsPage(
  grants: GrantView[],
  viewer: Viewer,
  canRevoke: (g: GrantView) => boolean,
  filter: { agent?: string | undefined; project?: string | undefined; state?: string | undefined },
): string {
  const rows = grants.map(
    (g) => html`<tr id="grant-${g.id}" data-state="${g.state}">
  <td><code>${g.id}</code></td><td>${g.project}</td><td><a href="/dashboard/agents/${g.project}/${g.agent}">${g.agent}</a></td><td><code>${g.action}</code><br><code class="res">${g.resource}</code></td>
  <td>${g.approved_by.join(", ")}</td>
  <td>${g.state === "active" ? html`${humanDuration(g.seconds_left)} left (until ${time(g.expires_at)})` : g.state === "revoked" ? html`revoked by ${g.revoked_by ?? "?"} at ${time(g.revoked_at)}` : html`expired ${time(g.expires_at)}`}</td>
  <td>${
    g.state === "active" && canRevoke(g)
      ? html`<form method="post" action="/dashboard/grants/${g.id}/revoke" data-action="revoke">
    <input type="hidden" name="_csrf" value="${viewer.csrf}">
    <button type="submit" class="danger">Revoke</button>
  </form>`
      : ""
  } <a href="/dashboard/audit?grant=${g.id}">events</a></td>
</tr>`,
  );
  return page(
    "Grants",
    viewer,
    "grants",
    html`<form class="filters" method="get" action="/dashboard/grants">
  <label>Agent <input name="agent" value="${filter.agent ?? ""}"></label>
  <label>Project <input name="project" value="${filter.project ?? ""}"></label>
  <label>State <select name="state">${["active", "all", "expired", "revoked"].map((s) => html`<option${s === (filter.state ?? "active") ? html` selected` : ""}>${s}</option>`)}</select></label>
  <button type="submit">Show</button>
</form>
<div class="table-wrap"><table class="grants">
<thead><tr><th>Grant</th><th>Project</th><th>Agent</th><th>Call</th><th>Approved by</th><th>Time</th><th></th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="7" class="empty">No grants match.</td></tr>`}</tbody>
</table></div>`,
  );
}

export function auditPage(
  events: TimelineEvent[],
  viewer: Viewer,
  chain: { ok: boolean; text: string },
  filter: Record<string, string | undefined>,
  next: string | undefined,
): string {
  const q = new URLSearchParams(
    Object.entries(filter).filter((e): e is [string, string] => !!e[1]),
  ).toString();
  return page(
    "Audit",
    viewer,
    "audit",
    html`<p class="chain ${chain.ok ? "ok" : "broken"}" role="status"><strong>${chain.ok ? "Chain verified" : "Chain BROKEN"}:</strong> ${chain.text}</p>
<form class="filters" method="get" action="/dashboard/audit">
  <label>Agent <input name="agent" value="${filter.agent ?? ""}"></label>
  <label>Project <input name="project" value="${filter.project ?? ""}"></label>
  <label>Type <input name="type" value="${filter.type ?? ""}" placeholder="access_request.*"></label>
  <button type="submit">Search</button>
  <a href="/dashboard/audit/export.jsonl${q ? `?${q}` : ""}" download>Export JSONL</a>
</form>
<ol class="timeline">${events.map(timelineItem)}</ol>
${next ? html`<p><a href="/dashboard/audit?${next}">Older events</a></p>` : ""}`,
  );
}

/** Decided and pending requests, searchable: who asked for what, who decided, when. */
export function historyPage(
  rows: AccessRequestView[],
  viewer: Viewer,
  filter: Record<string, string | undefined>,
): string {
  const f = (k: string) => filter[k] ?? "";
  const body = rows.map(
    (r) => html`<tr data-id="${r.id}" data-status="${r.status}">
  <td>${time(r.created_at)}</td><td>${r.project}</td><td>${r.agent}</td>
  <td><code>${r.action}</code><br><code class="res">${r.resource}</code>${r.kind === "one_shot" ? html` <span class="badge one-shot">once</span>` : ""}</td>
  <td><strong>${r.status}</strong>${r.decision ? html` by ${r.decision.by ?? "?"} via ${r.decision.via ?? "?"} at ${time(r.decision.at)}` : ""}${r.decision?.reason ? html`<br><span class="agent-text">${r.decision.reason}</span>` : ""}</td>
  <td><span class="agent-text">${r.reason}</span></td>
  <td><a href="/dashboard/audit?grant=${r.id}">events</a></td>
</tr>`,
  );
  return page(
    "History",
    viewer,
    "history",
    html`<form class="filters" method="get" action="/dashboard/history">
  <label>Agent <input name="agent" value="${f("agent")}"></label>
  <label>Project <input name="project" value="${f("project")}"></label>
  <label>Action <input name="action" value="${f("action")}" placeholder="stripe:*"></label>
  <label>Approver <input name="approver" value="${f("approver")}"></label>
  <label>Status <select name="status">${["", ...REQUEST_STATUSES].map((s) => html`<option value="${s}"${s === f("status") ? html` selected` : ""}>${s || "any"}</option>`)}</select></label>
  <label>From <input name="since" type="date" value="${f("since")}"></label>
  <label>To <input name="until" type="date" value="${f("until")}"></label>
  <button type="submit">Search</button>
</form>
<p class="lede">${rows.length} request${rows.length === 1 ? "" : "s"}, newest first. Reasons are written by the agents.</p>
<div class="table-wrap"><table class="history">
<thead><tr><th>Asked</th><th>Project</th><th>Agent</th><th>Call</th><th>Outcome</th><th>Agent's reason</th><th></th></tr></thead>
<tbody>${body.length ? body : html`<tr><td colspan="7" class="empty">No requests match.</td></tr>`}</tbody>
</table></div>`,
  );
}

export interface PolicyView {
  project: string;
  yaml: string;
  revisions: { revision: number; createdAt: string; source: string; cause: string | null }[];
  diff?: { from: number; to: number; text: string } | undefined;
  /** When the page shows a past moment: the moment, the revision in force then and its grants. */
  at?: { at: string; revision: number; grants: number } | undefined;
}

/** Each project's effective policy as YAML, its revisions, and the diff between any two. */
export function policiesPage(views: PolicyView[], viewer: Viewer): string {
  const one = (v: PolicyView) => {
    const latest = v.revisions[0]?.revision ?? 0;
    const options = (selected: number) =>
      v.revisions.map(
        (r) =>
          html`<option value="${r.revision}"${r.revision === selected ? html` selected` : ""}>${r.revision}</option>`,
      );
    return html`<section class="card policy" id="policy-${v.project}">
  <h2>${v.project} <small>revision ${latest}</small></h2>
  ${v.at ? html`<p class="as-at" role="status">As at ${time(v.at.at)}: revision ${v.at.revision}, with ${v.at.grants} grant${v.at.grants === 1 ? "" : "s"} of Butler in force then.</p>` : ""}
  <details${v.at ? html` open` : ""}><summary>Effective policy (YAML)${v.at ? " then" : ""}</summary><pre class="yaml" tabindex="0">${v.yaml}</pre></details>
  <form class="as-at" method="get" action="/dashboard/policies">
    <input type="hidden" name="project" value="${v.project}">
    <label>As at (UTC) <input type="datetime-local" name="at" step="1" value="${v.at ? v.at.at.slice(0, 19) : ""}"></label>
    <button type="submit">Show the policy then</button>
  </form>
  <details><summary>Simulate a change over the audit log</summary>
  <form method="post" action="/dashboard/policies/${v.project}/simulate">
    <input type="hidden" name="_csrf" value="${viewer.csrf}">
    <label>Policy file (its whole text) <textarea name="yaml" rows="12" required placeholder="project: ${v.project}"></textarea></label>
    <label>Since <input name="since" value="P30D" pattern="P.*"></label>
    <button type="submit">Simulate</button>
  </form></details>
  <h3>Revisions</h3>
  <ol class="revisions" reversed>${v.revisions.map((r) => html`<li>revision ${r.revision}, ${time(r.createdAt)}: ${r.cause ?? r.source}</li>`)}</ol>
  <form class="filters" method="get" action="/dashboard/policies">
    <input type="hidden" name="project" value="${v.project}">
    <label>From <select name="from">${options(v.diff?.from ?? Math.max(1, latest - 1))}</select></label>
    <label>To <select name="to">${options(v.diff?.to ?? latest)}</select></label>
    <button type="submit">Show the diff</button>
  </form>
  ${v.diff ? html`<h3>Revision ${v.diff.from} → ${v.diff.to}</h3>${v.diff.text ? diffBlock(v.diff.text) : html`<p>No difference.</p>`}` : ""}
</section>`;
  };
  return page("Policies", viewer, "policies", html`${views.map(one)}`);
}

/** What a policy file would have changed over the audit log (`butler policy simulate`, in the browser). */
export function simulationPage(r: PolicySimulation, viewer: Viewer): string {
  const rows = (calls: SimulatedCall[]) =>
    html`<table><thead><tr><th>Last call</th><th>Agent</th><th>Action</th><th>Resource</th><th>Calls</th><th>Recorded</th></tr></thead><tbody>${calls.map(
      (c) =>
        html`<tr><td><a href="/dashboard/audit?event=${c.event_id}">${time(c.at)}</a></td><td>${c.agent}</td><td><code>${c.action}</code></td><td><code>${c.resource || "(none)"}</code>${c.branch ? html` @<code>${c.branch}</code>` : ""}</td><td>${c.count}</td><td>${c.was}</td></tr>`,
    )}</tbody></table>`;
  return page(
    `Simulation: ${r.project}`,
    viewer,
    "policies",
    html`<p class="lede">The file against revision ${r.revision}, over ${r.calls} audited call${r.calls === 1 ? "" : "s"} from ${time(r.since)} to ${time(r.until)}, decided again from the audit log (nothing replayed upstream).</p>
<section class="card simulation" aria-label="Calls it would have allowed">
<h2>Would have allowed ${r.allowed_calls} call${r.allowed_calls === 1 ? "" : "s"} the policy in force denied</h2>
${r.refusals_lifted ? html`<p class="warn"><strong>${r.refusals_lifted} of them were refused by parameter constraints or deny patterns.</strong></p>` : ""}
${r.allowed.length ? rows(r.allowed) : ""}
</section>
<section class="card simulation" aria-label="Calls it would have denied">
<h2>Would have denied ${r.denied_calls} call${r.denied_calls === 1 ? "" : "s"} the policy in force allowed</h2>
${r.denied.length ? rows(r.denied) : ""}
</section>
${r.undetermined ? html`<p>${r.undetermined} call${r.undetermined === 1 ? " was" : "s were"} not decided again: the answer turns on parameters or on state the audit log does not keep.</p>` : ""}
${r.revoked_grants.length ? html`<p>Importing it would revoke: ${r.revoked_grants.map((g) => html`<code>${g.id}</code> (${g.reason}) `)}</p>` : ""}
<p><a href="/dashboard/policies?project=${r.project}">Back to the policies</a></p>`,
  );
}

/** One agent's session as a story, in order. */
export function replayPage(
  agent: string,
  lines: { seq: number; eventId: string; ts: string; text: string }[],
  viewer: Viewer,
): string {
  return page(
    `Session of ${agent}`,
    viewer,
    "timeline",
    html`<p class="lede">Every step of ${agent}, from the audit chain, as a story. Text from agents is shown as written.</p>
<ol class="story">${lines.map((l) => html`<li data-seq="${l.seq}">${time(l.ts)} <a href="/dashboard/audit?event=${l.eventId}">#${l.seq}</a> <span class="agent-text">${l.text}</span></li>`)}</ol>`,
  );
}
