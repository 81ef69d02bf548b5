import { type Parsed, print } from "../command.js";
import type { CliIo } from "../output.js";
import { withAdmin } from "../with-admin.js";

export async function dbMigrate({ values }: Parsed, io: CliIo): Promise<number> {
  const via = await withAdmin(
    io,
    async (ops, v) => {
      await ops.migrate();
      return v;
    },
    { create: true },
  );
  print(
    io,
    { migrated: true, via },
    `Database is up to date (${via === "server" ? "through the running server" : "applied directly"}).`,
    !!values.json,
  );
  return 0;
}
