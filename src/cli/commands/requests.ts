import type { Command, OptionSpec } from "../command.js";

const impl = () => import("../run/requests.js");

const approver: OptionSpec = {
  type: "string",
  value: "A",
  help: "the approver deciding (as named in the policy; required)",
};

/** Access requests and the grants their approval makes. */
export const requestCommands: Command[] = [
  {
    name: "requests list",
    usage: "[--status S] [--project P]",
    summary: "list access requests, newest first",
    options: {
      status: {
        type: "string",
        value: "S",
        help: "only requests in this state (pending, approved, denied, expired, ...)",
      },
      project: { type: "string", value: "P", help: "only this project's requests" },
    },
    positionals: [0, 0],
    example: "butler requests list --status pending",
    admin: true,
    run: async (a, io) => (await impl()).requestsList(a, io),
  },
  {
    name: "requests show",
    usage: "<id>",
    summary: "one request with its proposed policy diff",
    positionals: [1, 1],
    example: "butler requests show req_k3j9x0q2m4p8r1t6",
    admin: true,
    run: async (a, io) => (await impl()).requestsShow(a, io),
  },
  {
    name: "requests approve",
    usage: "<id> --approver A [--ttl T]",
    summary: "record an approver's approval (optionally for a shorter TTL)",
    options: {
      approver,
      ttl: {
        type: "string",
        value: "T",
        help: "grant for this long at most (ISO 8601 duration, e.g. PT10M)",
      },
      reason: { type: "string", value: "TEXT", help: "why, for the audit log" },
    },
    positionals: [1, 1],
    example: "butler requests approve req_k3j9x0q2m4p8r1t6 --approver jordan --ttl PT10M",
    admin: true,
    run: async (a, io) => (await impl()).requestsReview("approve", a, io),
  },
  {
    name: "break-glass",
    usage: "<project> --person P --agent A --action X [--resource R] [--branch B] [--ttl T] --reason TEXT",
    summary:
      "open short emergency access for an agent at once, in the name of a person settings.break_glass names; announced loudly, reviewed by a second person",
    options: {
      person: {
        type: "string",
        value: "P",
        help: "who breaks the glass (an approver in settings.break_glass.people; required)",
      },
      agent: { type: "string", value: "A", help: "the agent that gets access (required)" },
      action: { type: "string", value: "X", help: "the action, exactly (required)" },
      resource: { type: "string", value: "R", help: "the resource, exactly" },
      branch: { type: "string", value: "B", help: "the git branch, for git actions" },
      ttl: {
        type: "string",
        value: "T",
        help: "how long (at most settings.break_glass.max_ttl, default it)",
      },
      reason: {
        type: "string",
        value: "TEXT",
        help: "why (required; shown to every approver and the security room)",
      },
    },
    positionals: [1, 1],
    example:
      'butler break-glass project-billing --person jordan --agent billing-reconciler-1 --action git:push --resource reidataai/billing-ledger --branch hotfix/outage --ttl PT15M --reason "ledger outage"',
    admin: true,
    run: async (a, io) => (await impl()).breakGlassOpen(a, io),
  },
  {
    name: "requests remember",
    usage: "<id> --approver A",
    summary:
      "make an approved grant a permanent rule of the policy file (written to it, or as a patch where the directory is read-only or kept in git)",
    options: { approver },
    positionals: [1, 1],
    example: "butler requests remember req_k3j9x0q2m4p8r1t6 --approver jordan",
    admin: true,
    run: async (a, io) => (await impl()).requestsRemember(a, io),
  },
  {
    name: "requests deny",
    usage: "<id> --approver A [--reason TEXT]",
    summary: "record an approver's denial",
    options: { approver, reason: { type: "string", value: "TEXT", help: "why (the agent is told)" } },
    positionals: [1, 1],
    example: 'butler requests deny req_k3j9x0q2m4p8r1t6 --approver jordan --reason "not this week"',
    admin: true,
    run: async (a, io) => (await impl()).requestsReview("deny", a, io),
  },
  {
    name: "grants list",
    usage: "[--project P] [--all]",
    summary: "grants in force (--all: also expired and revoked)",
    options: {
      project: { type: "string", value: "P", help: "only this project's grants" },
      all: { type: "boolean", help: "also expired and revoked grants" },
    },
    positionals: [0, 0],
    example: "butler grants list --project project-billing",
    admin: true,
    run: async (a, io) => (await impl()).grantsList(a, io),
  },
  {
    name: "grants revoke",
    usage: "<id> [--reason TEXT]",
    summary: "revoke a grant at once",
    options: { reason: { type: "string", value: "TEXT", help: "why, for the audit log" } },
    positionals: [1, 1],
    example: 'butler grants revoke req_k3j9x0q2m4p8r1t6 --reason "task done"',
    admin: true,
    run: async (a, io) => (await impl()).grantsRevoke(a, io),
  },
];
