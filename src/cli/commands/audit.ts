import type { Command, OptionSpec } from "../command.js";

const impl = () => import("../run/audit.js");

const anchorOptions: Record<string, OptionSpec> = {
  checkpoints: {
    type: "string",
    multiple: true,
    value: "FILE",
    help: "also check the signed checkpoints in FILE (repeatable)",
  },
  "public-key": {
    type: "string",
    multiple: true,
    value: "PEM",
    help: "the public key that signed the checkpoints (repeatable)",
  },
};

const filterOptions = (agent: string): Record<string, OptionSpec> => ({
  agent: { type: "string", value: "A", help: agent },
  project: { type: "string", value: "P", help: "only this project's events" },
  since: { type: "string", value: "TIME", help: "only events at or after TIME (ISO 8601)" },
});

/** The audit log: verify it, export it, tell an agent's story, and make checkpoint keys. */
export const auditCommands: Command[] = [
  {
    name: "audit verify",
    usage: "[--checkpoints FILE]... [--public-key PEM]...",
    summary:
      "recompute the hash chain and check it against signed\ncheckpoints (in the log, and in FILE); exit 1 on any problem",
    options: anchorOptions,
    positionals: [0, 0],
    example: "butler audit verify --public-key checkpoint-key.pub",
    admin: true,
    run: async (a, io) => (await impl()).auditVerify(a, io),
  },
  {
    name: "audit verify-export",
    usage: "<jsonl> [--public-key PEM]... [--checkpoints FILE]...",
    summary: "check an export offline: its hash chain and checkpoints",
    options: anchorOptions,
    positionals: [1, 1],
    example: "butler audit verify-export audit.jsonl --public-key checkpoint-key.pub",
    run: async (a, io) => (await impl()).auditVerifyExport(a, io),
  },
  {
    name: "audit keygen",
    usage: "--out FILE",
    summary: "make an Ed25519 key pair for signing checkpoints",
    options: {
      out: {
        type: "string",
        value: "FILE",
        help: "write the private key to FILE (0600) and the public key to FILE.pub (required)",
      },
    },
    positionals: [0, 0],
    example: "butler audit keygen --out checkpoint-key",
    run: async (a, io) => (await impl()).auditKeygen(a, io),
  },
  {
    name: "audit export",
    usage: "[--agent A] [--project P] [--since TIME]",
    summary: "stream the audit log as JSONL",
    options: filterOptions("only this agent's events"),
    positionals: [0, 0],
    example: "butler audit export --since 2026-05-01 > audit.jsonl",
    admin: true,
    run: async (a, io) => (await impl()).auditExport(a, io),
  },
  {
    name: "audit replay",
    usage: "--agent A [--project P] [--since TIME]",
    summary: "tell one agent's session as a story",
    options: filterOptions("the agent (required)"),
    positionals: [0, 0],
    example: "butler audit replay --agent billing-reconciler-1",
    admin: true,
    run: async (a, io) => (await impl()).auditReplay(a, io),
  },
];
