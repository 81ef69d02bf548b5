import type { Command } from "../command.js";

const impl = () => import("../run/policy.js");

/** Policies (offline checks, and the revisions in the database) and provider specs. */
export const policyCommands: Command[] = [
  {
    name: "policy validate",
    usage: "[dir|file]",
    summary: "check policy files; exit 1 on any problem",
    positionals: [0, 1],
    example: "butler policy validate policies/",
    project: true,
    run: async (a, io) => (await impl()).policyValidate(a, io),
  },
  {
    name: "policy check",
    usage: "--agent A --project P --action X [--resource R] [--branch B] [--params JSON] [--at TIME] [dir]",
    summary:
      "decide one call offline from policy files, or with --at and no dir from the revisions stored then (exit 0 ALLOW, 1 DENY)",
    options: {
      agent: { type: "string", value: "A", help: "the agent making the call (required)" },
      project: { type: "string", value: "P", help: "its project (required)" },
      action: { type: "string", value: "X", help: "the action, e.g. git:push (required)" },
      resource: { type: "string", value: "R", help: "the resource it acts on" },
      branch: { type: "string", value: "B", help: "the git branch, for git actions" },
      params: { type: "string", value: "JSON", help: "the call's parameters, a JSON object" },
      at: {
        type: "string",
        value: "TIME",
        help: "decide as at TIME (ISO 8601); without dir, by the policy stored and the grants in force then",
      },
    },
    positionals: [0, 1],
    example:
      "butler policy check --agent billing-reconciler-1 --project project-billing --action git:push --resource reidataai/billing-ledger --branch feature/x",
    project: true,
    run: async (a, io) => (await impl()).policyCheck(a, io),
  },
  {
    name: "policy show",
    usage: "<project> [--at TIME]",
    summary: "print the policy in force as YAML (at TIME: as it was then, with the grants in force then)",
    options: {
      at: { type: "string", value: "TIME", help: "a past moment (ISO 8601 with a time zone)" },
    },
    positionals: [1, 1],
    example: "butler policy show project-billing --at 2026-11-20T09:30:00Z",
    admin: true,
    run: async (a, io) => (await impl()).policyShow(a, io),
  },
  {
    name: "policy history",
    usage: "<project>",
    summary: "list the stored revisions of a project's policy",
    positionals: [1, 1],
    example: "butler policy history project-billing",
    admin: true,
    run: async (a, io) => (await impl()).policyHistory(a, io),
  },
  {
    name: "policy diff",
    usage: "<project> <from> [<to>]",
    summary: "diff two revisions (default: to the newest)",
    positionals: [2, 3],
    example: "butler policy diff project-billing 1 2",
    admin: true,
    run: async (a, io) => (await impl()).policyDiff(a, io),
  },
  {
    name: "policy simulate",
    usage: "<project> <file> [--since DURATION]",
    summary:
      "what a policy file would have allowed or denied over the audited calls, against the policy in force",
    options: {
      since: { type: "string", value: "DURATION", help: "how far back to read the audit log (default P30D)" },
    },
    positionals: [2, 2],
    example: "butler policy simulate project-billing policies/project-billing.yaml --since P30D",
    admin: true,
    run: async (a, io) => (await impl()).policySimulate(a, io),
  },
  {
    name: "policy reload",
    usage: "",
    summary: "import the policies directory now",
    positionals: [0, 0],
    example: "butler policy reload",
    admin: true,
    run: async (a, io) => (await impl()).policyReload(a, io),
  },
  {
    name: "providers validate",
    usage: "[dir]",
    summary: "check provider specs (providers/*.yaml); exit 1 on any problem",
    positionals: [0, 1],
    example: "butler providers validate providers/",
    project: true,
    run: async (a, io) => (await impl()).providersValidate(a, io),
  },
];
