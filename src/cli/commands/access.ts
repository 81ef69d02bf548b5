import type { Command } from "../command.js";

const impl = () => import("../run/access.js");

const project = { type: "string", value: "P", help: "the project (as named in its policy file)" } as const;

/** Tokens, sign-in links and the Telegram webhook: what people and agents get to reach Butler. */
export const accessCommands: Command[] = [
  {
    name: "agents create",
    usage: "<agent> --project P",
    summary: "make a bearer token for an agent (shown once)",
    options: { project: { ...project, help: "the project the agent works in (required)" } },
    positionals: [1, 1],
    example: "butler agents create billing-reconciler-1 --project project-billing",
    admin: true,
    run: async (a, io) => (await impl()).agentsCreate(a, io),
  },
  {
    name: "agents list",
    usage: "[--project P]",
    summary: "list tokens (never the tokens themselves)",
    options: { project: { ...project, help: "only this project's tokens" } },
    positionals: [0, 0],
    example: "butler agents list --project project-billing",
    admin: true,
    run: async (a, io) => (await impl()).agentsList(a, io),
  },
  {
    name: "agents show",
    usage: "<agent> --project P",
    summary: "an agent's behavioural pact and health (pact violations of the last 30 days)",
    options: { project: { ...project, help: "the agent's project (required)" } },
    positionals: [1, 1],
    example: "butler agents show procurement-agent --project project-billing",
    admin: true,
    run: async (a, io) => (await impl()).agentsShow(a, io),
  },
  {
    name: "agents revoke",
    usage: "<agent> --project P [--token ID]",
    summary: "revoke an agent's tokens (or one of them)",
    options: {
      project: { ...project, help: "the agent's project (required)" },
      token: { type: "string", value: "ID", help: "revoke only this token (its id, from agents list)" },
    },
    positionals: [1, 1],
    example: "butler agents revoke billing-reconciler-1 --project project-billing",
    admin: true,
    run: async (a, io) => (await impl()).agentsRevoke(a, io),
  },
  {
    name: "approvers token",
    usage: "<approver>",
    summary: "make a bearer token for an approver (a person; shown once)",
    positionals: [1, 1],
    example: "butler approvers token jordan",
    admin: true,
    run: async (a, io) => (await impl()).approversToken(a, io),
  },
  {
    name: "approvers link",
    usage: "<approver> --telegram",
    summary: "a one-time deep link that binds the approver's Telegram account",
    options: { telegram: { type: "boolean", help: "link a Telegram account (required)" } },
    positionals: [1, 1],
    example: "butler approvers link jordan --telegram",
    admin: true,
    run: async (a, io) => (await impl()).approversLink(a, io),
  },
  {
    name: "auditors token",
    usage: "<auditor>",
    summary: "make a read-only dashboard token for an auditor (shown once)",
    positionals: [1, 1],
    example: "butler auditors token sam",
    admin: true,
    run: async (a, io) => (await impl()).auditorsToken(a, io),
  },
  {
    name: "dashboard link",
    usage: "<approver>",
    summary: "a one-time link that signs an approver in to the dashboard (15 minutes)",
    positionals: [1, 1],
    example: "butler dashboard link jordan",
    admin: true,
    run: async (a, io) => (await impl()).dashboardLink(a, io),
  },
  {
    name: "telegram set-webhook",
    usage: "",
    summary: "register BUTLER_PUBLIC_URL/telegram/webhook (and its secret) with Telegram",
    positionals: [0, 0],
    example: "butler telegram set-webhook",
    admin: true,
    run: async (a, io) => (await impl()).telegramSetWebhook(a, io),
  },
];
