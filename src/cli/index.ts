import { isAppError } from "../errors.js";
import { args, UsageError } from "./command.js";
import { COMMANDS, findCommand } from "./commands/index.js";
import { commandHelp, commandList, groupHelp } from "./help.js";
import { type CliIo, markOutputClosed, OutputClosed, termSafe, termSafeLines } from "./output.js";
import { projectDirs } from "./project.js";

// This module and the command table import no server, database or framework: `butler --help` and
// every command's parsing load only them; a command's implementation is imported when it runs.

/** Runs one CLI command. Returns the process exit code (0 ok, 1 failed or denied, 2 usage error). */
export async function main(
  argv: string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  const [command, sub] = argv;
  const json = argv.includes("--json");
  if (io.stdout === process.stdout) {
    process.stdout.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") markOutputClosed();
    });
  }
  try {
    const help = helpFor(argv);
    if (help) {
      io.stdout.write(help.text);
      return help.code;
    }
    const found = findCommand(argv);
    if (!found) {
      const words = [command, sub].filter((w): w is string => !!w && !w.startsWith("-"));
      throw new UsageError(`unknown command: butler ${words.join(" ")}`);
    }
    const parsed = args(found, argv.slice(found.name.split(" ").length));
    const project = projectDirs(io.env, io.cwd ?? process.cwd());
    if (project.note && (found.admin || (found.project && parsed.positionals.length === 0)))
      io.stderr.write(`butler: ${termSafe(project.note)}\n`);
    return await found.run(parsed, { ...io, env: project.env, dataDirFrom: project.dataDirFrom });
  } catch (e) {
    // The reader of a streamed export went away: that is how `| head` works, not a failure.
    if (e instanceof OutputClosed) return 0;
    const usage =
      e instanceof UsageError || (e as NodeJS.ErrnoException).code?.startsWith?.("ERR_PARSE_ARGS");
    // Unexpected errors show their first line only: a driver error's later lines can hold query
    // parameters, which are nobody's business in a terminal.
    // Whatever an error carries, no configured secret and no URL credential is printed.
    const message = (await cliRedactor(io.env))(
      usage || isAppError(e)
        ? (e as Error).message
        : `unexpected error: ${String((e as Error).message ?? e).split("\n")[0]}`,
    );
    if (json)
      io.stdout.write(
        `${JSON.stringify({ error: { code: isAppError(e) ? e.code : usage ? "USAGE" : "INTERNAL", message } })}\n`,
      );
    const pointer = usage && !message.includes("--help") ? "Run butler --help for usage.\n" : "";
    io.stderr.write(`butler: ${termSafeLines(message)}\n${pointer}`);
    return usage ? 2 : 1;
  }
}

/**
 * What `--help` (anywhere), `help [command]` or no command at all prints: the command's own help,
 * its group's list (`butler policy --help`), or every command. No command at all is a usage error.
 */
function helpFor(argv: string[]): { text: string; code: number } | undefined {
  const [command] = argv;
  if (!command) return { text: commandList(COMMANDS), code: 2 };
  const asked =
    command === "help" ? argv.slice(1) : argv.includes("--help") || argv.includes("-h") ? argv : undefined;
  if (!asked) return undefined;
  const words = asked.filter((w) => !w.startsWith("-"));
  const found = findCommand(words);
  if (found) return { text: commandHelp(found), code: 0 };
  // A group of one command (`db`, `providers`, ...) is a group too: `butler db --help` lists it.
  const group = COMMANDS.filter((c) => c.name.includes(" ") && c.name.split(" ")[0] === words[0]);
  if (group.length > 0 && words[0]) return { text: groupHelp(words[0], group), code: 0 };
  return { text: commandList(COMMANDS), code: 0 };
}

/**
 * Takes the configuration's secrets (and URL credentials) out of what the CLI prints; only the
 * URL credentials when the configuration does not load. Imported here, on the error path only.
 */
async function cliRedactor(env: CliIo["env"]): Promise<(s: string) => string> {
  const [{ configuredSecrets, loadConfig }, { createSecrets }] = await Promise.all([
    import("../config.js"),
    import("../secrets.js"),
  ]);
  let secrets: ReturnType<typeof createSecrets>;
  try {
    secrets = createSecrets(configuredSecrets(loadConfig(env)));
  } catch {
    secrets = createSecrets();
  }
  return (s) => secrets.redact(s);
}
