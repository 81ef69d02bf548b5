import { args, type Command, print, UsageError } from "../command.js";
import { type CliIo, termSafe } from "../output.js";
import { withAdmin } from "../with-admin.js";

async function credentialsSet(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  // The value comes from standard input only: argv is visible to every user of the machine.
  let value = "";
  for await (const chunk of io.stdin ?? process.stdin) {
    value += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    if (value.length > 16_384 * 4) throw new UsageError("the value on standard input is too long");
  }
  value = value.replace(/\r?\n$/, "");
  if (!value)
    throw new UsageError(
      'send the credential on standard input, e.g. printf %s "$KEY" | butler credentials set STRIPE_API_KEY',
    );
  const r = await withAdmin(io, (ops) => ops.setCredential(positionals[0]!, value));
  print(
    io,
    r,
    `${r.created ? "Stored" : "Replaced"} ${r.name} (encrypted; it is never shown again)`,
    !!values.json,
  );
  return 0;
}

async function credentialsList(argv: string[], io: CliIo): Promise<number> {
  const { values } = args(argv, {}, [0, 0]);
  const list = await withAdmin(io, (ops) => ops.listCredentials());
  const text =
    list.length === 0
      ? "no stored credentials"
      : list
          .map((c) => `${c.name}  key ${c.key_id}  updated ${c.updated_at} by ${termSafe(c.updated_by)}`)
          .join("\n");
  print(io, { credentials: list }, text, !!values.json);
  return 0;
}

async function credentialsDelete(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = args(argv, {}, [1, 1]);
  const r = await withAdmin(io, (ops) => ops.deleteCredential(positionals[0]!));
  print(io, r, `Deleted ${r.name}`, !!values.json);
  return 0;
}

export const credentialCommands: Command[] = [
  {
    name: "credentials set",
    usage: "<NAME>",
    summary: "store a provider credential, read from standard input, encrypted",
    admin: true,
    run: credentialsSet,
  },
  {
    name: "credentials list",
    usage: "",
    summary: "stored credentials: names and dates, never values",
    admin: true,
    run: credentialsList,
  },
  {
    name: "credentials delete",
    usage: "<NAME>",
    summary: "remove a stored credential",
    admin: true,
    run: credentialsDelete,
  },
];
