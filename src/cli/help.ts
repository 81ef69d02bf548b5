import type { Command } from "./command.js";

/** Where summaries start in the command list; a longer usage puts its summary on the next line. */
const COLUMN = 43;

const VIA_ADMIN = `While a server runs, commands go through its admin API (found via BUTLER_DATA_DIR/server.json,
or BUTLER_URL with BUTLER_ADMIN_TOKEN; a server still starting is waited for, up to BUTLER_CLI_WAIT_MS);
otherwise they open the database directly. BUTLER_DATA_DIR defaults to the .butler directory of the
project: the nearest directory, from here upwards, that holds .butler or policies.
`;

function synopsis(c: Command): string {
  return c.usage ? `${c.name} ${c.usage}` : c.name;
}

/** One entry of the command list: usage, then the summary in the second column. */
function entry(c: Command): string {
  const left = `  ${synopsis(c)}`;
  const [first = "", ...more] = c.summary.split("\n");
  const head =
    left.length < COLUMN ? `${left.padEnd(COLUMN)}${first}` : `${left}\n${" ".repeat(COLUMN)}${first}`;
  return [head, ...more.map((l) => `${" ".repeat(COLUMN)}${l}`)].join("\n");
}

/** `butler --help`: every command. */
export function commandList(commands: readonly Command[]): string {
  return `butler: a deny-by-default governance gateway for AI agents

Usage: butler <command> [options]          (every command accepts --json and --help)

${commands.map(entry).join("\n")}

${VIA_ADMIN}`;
}

/** `butler <command> --help`: the one command, its options and an example. */
export function commandHelp(c: Command): string {
  const options = [
    ...Object.entries(c.options ?? {}).map(([name, o]) => [
      `--${name}${o.value ? ` ${o.value}` : ""}${o.multiple ? " ..." : ""}`,
      o.help,
    ]),
    ["--json", "print the result as JSON"],
    ["--help", "print this"],
  ];
  const width = Math.max(...options.map(([flag]) => flag!.length)) + 2;
  return `Usage: butler ${synopsis(c)}

${c.summary.replaceAll("\n", " ")}

Options:
${options.map(([flag, help]) => `  ${flag!.padEnd(width)}${help}`).join("\n")}

Example:
  ${c.example}
${c.admin ? `\n${VIA_ADMIN}` : ""}`;
}

/** `butler <group> --help` (e.g. `butler policy --help`): the commands of that group. */
export function groupHelp(group: string, commands: readonly Command[]): string {
  return `Usage: butler ${group} <command> [options]

${commands.map(entry).join("\n")}
`;
}
