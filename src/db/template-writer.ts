import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { pgliteDatabase } from "./client.js";
import { migrate } from "./migrate.js";
import { infoFileOf, pgliteVersion, TEMPLATE_FILE, type TemplateInfo } from "./pglite-template.js";

/** Makes the template: a migrated, empty database, dumped as a gzipped tar, with its info beside it. */
export async function writePgliteTemplate(file = TEMPLATE_FILE): Promise<{ bytes: number }> {
  const client = await PGlite.create();
  try {
    await migrate(pgliteDatabase(client));
    const tar = Buffer.from(await (await client.dumpDataDir("gzip")).arrayBuffer());
    await mkdir(dirname(file), { recursive: true });
    const info: TemplateInfo = { pglite: pgliteVersion() };
    await writeAtomically(infoFileOf(file), `${JSON.stringify(info)}\n`);
    await writeAtomically(file, tar);
    return { bytes: tar.length };
  } finally {
    await client.close();
  }
}

/** Written aside and moved into place: a build interrupted half-way leaves no torn template. */
async function writeAtomically(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}
