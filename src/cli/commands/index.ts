import type { Command } from "../command.js";
import { accessCommands } from "./access.js";
import { auditCommands } from "./audit.js";
import { credentialCommands } from "./credentials.js";
import { mcpCommands } from "./mcp.js";
import { policyCommands } from "./policy.js";
import { requestCommands } from "./requests.js";
import { serveCommands } from "./serve.js";

/** Every `butler` command, in the order `butler --help` lists them. */
export const COMMANDS: readonly Command[] = [
  ...serveCommands,
  ...policyCommands,
  ...accessCommands,
  ...requestCommands,
  ...credentialCommands,
  ...auditCommands,
  ...mcpCommands,
];

/** The command named by the first words of `argv`, if any. */
export function findCommand(argv: readonly string[]): Command | undefined {
  return COMMANDS.find((c) => c.name.split(" ").every((w, i) => argv[i] === w));
}
