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

/** Slack's Block Kit limits (the fake Slack API in test/ enforces the same). */
export const SLACK_LIMITS = {
  blocks: 50,
  sectionText: 3000,
  fieldText: 2000,
  fields: 10,
  headerText: 150,
  buttonValue: 2000,
  messageText: 4000,
} as const;

export type SlackBlock = Record<string, unknown>;

export const ACTION_APPROVE = "butler_approve";
export const ACTION_REMEMBER = "butler_remember";
export const ACTION_APPROVE_SHORT = "butler_approve_short";
export const ACTION_DENY = "butler_deny";
export const DENY_MODAL = "butler_deny_modal";
/** A security alert's buttons, by the action each takes (the button's value is the alert id). */
export const ALERT_BUTTONS = {
  butler_alert_ack: "acknowledge",
  butler_alert_suspend: "suspend",
  butler_alert_trust: "restore_trust",
} as const;

/**
 * Escapes text for Slack mrkdwn: `&`, `<` and `>` become entities, so nothing can form a link,
 * a mention (`<@U…>`, `<!here>`) or a channel reference.
 */
export function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const plain = (text: string, max: number) => ({
  type: "plain_text",
  text: truncate(text, max).text,
  emoji: false,
});

/**
 * The approval card as a Slack message. Everything the agent wrote (reason, resource, branch) is
 * shown only as plain text (never parsed for formatting, links or mentions) and labelled; the
 * diff is escaped inside a code block and cut to Slack's limits, with a link to the full proposal.
 */
export function slackCard(card: ApprovalCard): { text: string; blocks: SlackBlock[] } {
  const outcome = outcomeLine(card);
  const deadline = deadlineLine(card);
  const radius = blastRadiusText(card);
  const fields = [
    `Project: ${card.project}`,
    `Agent: ${card.agent}`,
    `Resource: ${card.resource || "(none)"}${card.resourcePattern ? ` (the grant asks for ${card.resourcePattern})` : ""}`,
    ...(card.branch ? [`Branch: ${card.branch}`] : []),
    `TTL: ${ttlLine(card)}`,
    `Risk: ${card.riskTier} · ${approvalsLine(card)}`,
    ...(deadline ? [deadline] : []),
  ].map((f) => plain(f, SLACK_LIMITS.fieldText));
  const diffBudget = SLACK_LIMITS.sectionText - 60;
  const diff = truncate(escapeMrkdwn(card.diff), diffBudget, "\n… (cut: see the full proposal)");
  const blocks: SlackBlock[] = [
    { type: "header", text: plain(`Access request: ${card.action}`, SLACK_LIMITS.headerText) },
    { type: "section", fields },
    {
      type: "section",
      text: plain(`Reason (written by the agent): ${card.reason}`, SLACK_LIMITS.sectionText),
    },
    // The facts name agent-written resources: plain text only, never parsed.
    ...(radius ? [{ type: "section", text: plain(radius, SLACK_LIMITS.sectionText) }] : []),
    ...(card.pastDenials.length > 0
      ? [
          {
            type: "context",
            elements: [
              {
                type: "mrkdwn",
                text: `Past denials it would have allowed: ${card.pastDenials.map((d) => `<${d.url}|${d.eventId}>`).join(", ")}`,
              },
            ],
          },
        ]
      : []),
    {
      type: "section",
      text: {
        type: "mrkdwn",
        text: `*${card.oneShot ? "Approve this exact call, once" : "Proposed policy change"}*\n\`\`\`${diff.text}\`\`\``,
      },
    },
    {
      type: "context",
      elements: [
        { type: "mrkdwn", text: `<${card.url}|Full proposal> · request ${escapeMrkdwn(card.requestId)}` },
      ],
    },
  ];
  if (outcome === undefined) {
    const short = shorterTtlSeconds(card);
    blocks.push({
      type: "actions",
      block_id: "butler_actions",
      elements: [
        {
          type: "button",
          action_id: ACTION_APPROVE,
          style: "primary",
          text: plain("Approve", 75),
          value: card.requestId,
        },
        ...(short
          ? [
              {
                type: "button",
                action_id: ACTION_APPROVE_SHORT,
                text: plain("Approve for 1h", 75),
                value: `${card.requestId}|${short}`,
              },
            ]
          : []),
        {
          type: "button",
          action_id: ACTION_DENY,
          style: "danger",
          text: plain("Deny", 75),
          value: card.requestId,
        },
      ],
    });
  } else {
    blocks.push({ type: "section", text: plain(outcome, SLACK_LIMITS.sectionText) });
    if (mayRemember(card))
      blocks.push({
        type: "actions",
        block_id: "butler_remember",
        elements: [
          {
            type: "button",
            action_id: ACTION_REMEMBER,
            text: plain("Remember as a permanent rule", 75),
            value: card.requestId,
          },
        ],
      });
  }
  const text = escapeMrkdwn(
    truncate(
      `Access request ${card.requestId}: ${card.agent} asks for ${card.action} on ${card.resource || "(no resource)"}${outcome ? ` — ${outcome}` : ""}`,
      1000,
    ).text,
  );
  return { text, blocks };
}

/** The modal that asks for an optional reason when denying. */
export function denyModal(requestId: string): Record<string, unknown> {
  return {
    type: "modal",
    callback_id: DENY_MODAL,
    private_metadata: requestId,
    title: { type: "plain_text", text: "Deny access request" },
    submit: { type: "plain_text", text: "Deny" },
    close: { type: "plain_text", text: "Cancel" },
    blocks: [
      {
        type: "input",
        block_id: "reason",
        optional: true,
        label: { type: "plain_text", text: "Reason (the agent will see it)" },
        element: { type: "plain_text_input", action_id: "value", multiline: true, max_length: 1000 },
      },
    ],
  };
}

/**
 * A security alert as a Slack message: every fact as plain text (provider and agent text is never
 * parsed for links or mentions), a link to the agent's page in the dashboard.
 */
export function slackAlert(alert: SecurityAlert): { text: string; blocks: SlackBlock[] } {
  const title = `Security alert: ${alert.title}`;
  const facts = alert.facts.map((f) => `• ${f}`).join("\n");
  return {
    // The notification's fallback text is mrkdwn: escaped, so that no mention or link forms.
    text: escapeMrkdwn(truncate(title, SLACK_LIMITS.messageText - 500).text),
    blocks: [
      { type: "header", text: plain("Security alert", SLACK_LIMITS.headerText) },
      { type: "section", text: plain(alert.title, SLACK_LIMITS.sectionText) },
      ...(facts ? [{ type: "section", text: plain(facts, SLACK_LIMITS.sectionText) }] : []),
      {
        type: "context",
        elements: [
          {
            type: "mrkdwn",
            text: `${escapeMrkdwn(alert.project)} · ${escapeMrkdwn(alert.id)} · <${escapeMrkdwn(alert.url)}|agent page>`,
          },
        ],
      },
      {
        type: "actions",
        block_id: "butler_alert_actions",
        elements: [
          ["butler_alert_ack", "Acknowledge", "primary"],
          ["butler_alert_suspend", "Suspend grants", "danger"],
          ["butler_alert_trust", "Restore trust", undefined],
        ].map(([action_id, label, style]) => ({
          type: "button",
          action_id,
          text: plain(label!, 75),
          value: alert.id,
          ...(style ? { style } : {}),
        })),
      },
    ],
  };
}
