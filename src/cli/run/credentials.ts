import { type Parsed, print, UsageError } from "../command.js";
import { type CliIo, termSafe } from "../output.js";
import { withAdmin } from "../with-admin.js";

export async function credentialsSet({ values, positionals }: Parsed, io: CliIo): Promise<number> {
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

export async function credentialsList({ values }: Parsed, io: CliIo): Promise<number> {
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

export async function credentialsDelete({ values, positionals }: Parsed, io: CliIo): Promise<number> {
  const r = await withAdmin(io, (ops) => ops.deleteCredential(positionals[0]!));
  print(io, r, `Deleted ${r.name}`, !!values.json);
  return 0;
}
