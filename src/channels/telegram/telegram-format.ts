import type { ApprovalCard } from "../../butler/approval-card.js";
import type { SecurityAlert } from "../../gateway/alerts.js";
import {
  approvalsLine,
  blastRadiusText,
  deadlineLine,
  mayRemember,
  outcomeLine,
  shorterTtlSeconds,
  truncate,
  ttlLine,
} from "../render.js";

/** Telegram Bot API limits (the fake Bot API in test/ enforces the same). */
export const TELEGRAM_LIMITS = { messageText: 4096, callbackData: 64 } as const;

/** Escapes text for Telegram's HTML parse mode (in text and in attribute values alike). */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

export interface InlineButton {
  text: string;
  callback_data: string;
}

/** `ap:<id>` approve, `a1:<id>` approve for 1 hour, `dn:<id>` deny: well under 64 bytes. */
export const CALLBACK = /^(ap|a1|dn|rm):(req_[a-z0-9]{16})$/;
/** A security alert's buttons: acknowledge, suspend the agent's grants, restore its trust score. */
export const ALERT_CALLBACK = /^(sa|ss|st):(al_[a-z0-9]{16})$/;
export const ALERT_VERBS = { sa: "acknowledge", ss: "suspend", st: "restore_trust" } as const;

/** The alert's buttons as an inline keyboard. */
export function alertKeyboard(alertId: string): InlineButton[][] {
  return [
    [
      { text: "Acknowledge", callback_data: `sa:${alertId}` },
      { text: "Suspend grants", callback_data: `ss:${alertId}` },
      { text: "Restore trust", callback_data: `st:${alertId}` },
    ],
  ];
}

const code = (s: string) => `<code>${escapeHtml(s)}</code>`;

/**
 * The approval card as a Telegram message in HTML parse mode. Text the agent wrote is shown only
 * inside <pre>/<code> (where Telegram detects no links or mentions), escaped and labelled; the
 * diff is cut so that the message stays within 4096 characters, with the full proposal's address.
 */
export function telegramCard(card: ApprovalCard): { text: string; keyboard: InlineButton[][] | undefined } {
  const outcome = outcomeLine(card);
  const deadline = deadlineLine(card);
  const head = [
    `<b>Access request</b> ${code(card.requestId)}`,
    `<b>Project:</b> ${code(card.project)}`,
    `<b>Agent:</b> ${code(card.agent)}`,
    `<b>Action:</b> ${code(card.action)}`,
    `<b>Resource:</b> ${code(truncate(card.resource || "(none)", 500).text)}`,
    ...(card.resourcePattern
      ? [`<b>The grant asks for:</b> ${code(truncate(card.resourcePattern, 500).text)}`]
      : []),
    ...(card.branch ? [`<b>Branch:</b> ${code(truncate(card.branch, 200).text)}`] : []),
    `<b>TTL:</b> ${escapeHtml(ttlLine(card))} · <b>Risk:</b> ${card.riskTier} · ${escapeHtml(approvalsLine(card))}`,
    ...(deadline ? [`<b>${escapeHtml(deadline)}</b>`] : []),
    "<b>Reason (written by the agent):</b>",
    `<pre>${escapeHtml(truncate(card.reason, 800).text)}</pre>`,
    ...(card.blastRadius.length > 0 ? [escapeHtml(truncate(blastRadiusText(card), 1200).text)] : []),
    ...(card.pastDenials.length > 0
      ? [
          `Past denials it would have allowed: ${card.pastDenials.map((d) => `<a href="${escapeHtml(d.url)}">${escapeHtml(d.eventId)}</a>`).join(", ")}`,
        ]
      : []),
    card.oneShot ? "<b>Approve this exact call, once:</b>" : "<b>Proposed policy change:</b>",
  ].join("\n");
  const tail = [
    `Full proposal: ${escapeHtml(card.url)}`,
    ...(outcome ? [`<b>${escapeHtml(truncate(outcome, 600).text)}</b>`] : []),
  ].join("\n");
  const open = '<pre><code class="language-diff">';
  const close = "</code></pre>";
  const budget = TELEGRAM_LIMITS.messageText - head.length - tail.length - open.length - close.length - 4;
  const diff = fitEscaped(card.diff, budget, "\n… (cut: see the full proposal)");
  const text = `${head}\n${open}${diff}${close}\n${tail}`;
  const short = shorterTtlSeconds(card);
  const keyboard =
    outcome === undefined
      ? [
          [
            { text: "✅ Approve", callback_data: `ap:${card.requestId}` },
            ...(short ? [{ text: "⏱ Approve for 1h", callback_data: `a1:${card.requestId}` }] : []),
          ],
          [{ text: "❌ Deny", callback_data: `dn:${card.requestId}` }],
        ]
      : mayRemember(card)
        ? [[{ text: "📌 Remember as a permanent rule", callback_data: `rm:${card.requestId}` }]]
        : undefined;
  return { text, keyboard };
}

/** Escapes `text` and cuts it so that the escaped result fits `budget` (never inside an entity). */
function fitEscaped(text: string, budget: number, marker: string): string {
  const escaped = escapeHtml(text);
  if (escaped.length <= budget) return escaped;
  let out = "";
  for (const ch of text) {
    const e = escapeHtml(ch);
    if (out.length + e.length > budget - marker.length) break;
    out += e;
  }
  return out + escapeHtml(marker);
}

/** The prompt that asks a denier for a reason; the request id in it survives restarts. */
export function denyPrompt(requestId: string): string {
  return `Why deny ${requestId}? Reply to this message with a reason (the agent will see it), or with /skip.`;
}

export const DENY_PROMPT = /^Why deny (req_[a-z0-9]{16})\?/;

/** A security alert as a Telegram message (HTML, every fact escaped), with a link to the agent's page. */
export function telegramAlert(alert: SecurityAlert): string {
  const head = `<b>Security alert</b> · ${escapeHtml(alert.project)}\n`;
  const tail = `\n<a href="${escapeHtml(alert.url)}">agent page</a> · ${code(alert.id)}`;
  const body = [alert.title, ...alert.facts.map((f) => `• ${f}`)].join("\n");
  return head + fitEscaped(body, TELEGRAM_LIMITS.messageText - head.length - tail.length, "\n…") + tail;
}
