import type { AgentHealth } from "../admin/admin-service.js";
import { type Html, html, page, time } from "./html.js";

/** What each drift dimension counts, as its heading says it. */
const DIMENSIONS: Readonly<Record<string, string>> = {
  tool: "Tools",
  group: "Operation groups",
  merchant_category: "Card merchant categories",
};

/**
 * An agent's page (pure: data in, HTML out): its pact, health, trust score over time and drift, as
 * SVG drawn here (no script, no style attribute: the dashboard's CSP allows neither), and its
 * recent pact violations linked into the audit log. Every value from the policy or the agent is
 * escaped by `html`.
 */

type Viewer = Parameters<typeof page>[1];

const W = 600;
const H = 120;

/** The trust score over the last 30 days, as a step line from 0 to 1000 (`now` on the right). */
export function trustChart(h: AgentHealth["trust_history"], score: number, now: Date): Html {
  const from = now.getTime() - 30 * 86_400_000;
  const x = (iso: string) => Math.round(((Date.parse(iso) - from) / (now.getTime() - from)) * W);
  const y = (v: number) => Math.round(H - (v / 1000) * H);
  const start = h.length > 0 ? h[0]!.before : score;
  const points: string[] = [`0,${y(start)}`];
  for (const c of h) points.push(`${x(c.ts)},${y(c.before)}`, `${x(c.ts)},${y(c.after)}`);
  points.push(`${W},${y(score)}`);
  return html`<svg class="chart" role="img" aria-label="trust score over the last 30 days" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}">
  <rect x="0" y="0" width="${W}" height="${H}" fill="none" stroke="#ccc"/>
  <polyline points="${points.join(" ")}" fill="none" stroke="#2457a6" stroke-width="2"/>
</svg>`;
}

/** A drift's biggest shifts: each tool's share before (grey) and now (blue). */
function shiftsChart(shifts: { value: string; baseline: number; recent: number }[]): Html {
  const row = 22;
  return html`<svg class="chart" role="img" aria-label="shares of tools, before and now" viewBox="0 0 ${W} ${row * shifts.length}" width="${W}" height="${row * shifts.length}">
${shifts.map(
  (s, i) => html`<text x="0" y="${i * row + 14}" font-size="12">${s.value}</text>
<rect x="300" y="${i * row + 2}" width="${Math.round(s.baseline * 290)}" height="8" fill="#999"/>
<rect x="300" y="${i * row + 11}" width="${Math.round(s.recent * 290)}" height="8" fill="#2457a6"/>`,
)}
</svg>`;
}

export function agentPage(h: AgentHealth, viewer: Viewer, now: Date): string {
  const pact = h.pact as Record<string, unknown> | null;
  const list = (v: unknown) => (Array.isArray(v) ? v.join(", ") : "any");
  return page(
    `${h.agent} in ${h.project}`,
    viewer,
    "grants",
    html`<h1>${h.agent} <small>in ${h.project}</small></h1>
<p class="health">Health <strong>${h.health}</strong>/100 (${h.violations_30d} pact violation(s) in the last 30 days) · Trust <strong>${h.trust ?? "not used"}</strong>${h.trust === null ? "" : "/1000"}</p>
<h2>Pact <small>${h.pact_source === "api" ? `set through the API, revision ${h.pact_revision}` : h.pact_source === "policy" ? "from the policy file" : ""}</small></h2>
${
  pact
    ? html`<dl class="pact">
  <dt>Purpose</dt><dd>${String(pact.purpose)}</dd>
  <dt>Data</dt><dd>${String(pact.expected_classification ?? "not said")}</dd>
  <dt>Tools</dt><dd><code>${list(pact.intended_tools)}</code></dd>
  <dt>Operation groups</dt><dd>${list(pact.intended_operations)}</dd>
  <dt>On violation</dt><dd>${String(pact.on_violation)}</dd>
</dl>`
    : html`<p>No pact for this agent.</p>`
}
${h.trust === null ? "" : html`<h2>Trust over 30 days</h2>${trustChart(h.trust_history, h.trust, now)}`}
<h2>Drift</h2>
${
  h.drift.length === 0
    ? html`<p>Not computed yet.</p>`
    : h.drift.map(
        (
          d,
        ) => html`<h3>${DIMENSIONS[d.dimension] ?? d.dimension}: <span class="level-${d.level}">${d.level}</span></h3>
<p>Jaccard distance ${String(d.numbers.jaccard ?? "")}, Jensen–Shannon divergence ${String(d.numbers.jensen_shannon ?? "")} (${String(d.numbers.recent_calls ?? 0)} ${d.dimension === "merchant_category" ? "payments" : "calls"} in the last 24 h, ${String(d.numbers.baseline_calls ?? 0)} in the 14 days before; computed ${time(d.computed_at)})${Array.isArray(d.numbers.new_values) && d.numbers.new_values.length > 0 ? html`; new: ${d.numbers.new_values.map(String).join(", ")}` : ""}</p>
${Array.isArray(d.numbers.shifts) && d.numbers.shifts.length > 0 ? shiftsChart(d.numbers.shifts as { value: string; baseline: number; recent: number }[]) : ""}`,
      )
}
<h2>Recent pact violations</h2>
${
  h.recent_violations.length === 0
    ? html`<p>None in the last 30 days.</p>`
    : html`<ul class="violations">${h.recent_violations.map(
        (v) =>
          html`<li>${time(v.ts)} <a href="/dashboard/audit?event=${v.event_id}">${v.event_id}</a> ${v.reason ?? ""}</li>`,
      )}</ul>`
}
<p><a href="/dashboard/audit?agent=${h.agent}&amp;project=${h.project}">All of ${h.agent}'s audit events</a></p>`,
  );
}
