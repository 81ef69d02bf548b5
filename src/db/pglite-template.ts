import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";

/**
 * The embedded database as a first start makes it (initdb, then every migration), made once by
 * `npm run build` and shipped in dist/. A new data directory is unpacked from it in a fraction of
 * a second instead of the seconds initdb takes; the migrations it lacks (added after the build)
 * are applied as usual. The same path from src/db and from dist/db.
 */
export const TEMPLATE_FILE = fileURLToPath(new URL("../../dist/pglite-template.tgz", import.meta.url));

/** What the template was made with: a template of another PGlite is not used. */
export interface TemplateInfo {
  pglite: string;
}

/** The installed PGlite's version (its package.json, found next to its entry point). */
export function pgliteVersion(): string {
  let dir = dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
        name?: string;
        version: string;
      };
      if (pkg.name === "@electric-sql/pglite") return pkg.version;
    } catch {
      /* not here: one level up */
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find @electric-sql/pglite's package.json");
    dir = up;
  }
}

/** "unpacked", or why the template was not used (then the database is made by initdb). */
export type Unpacked =
  | "unpacked"
  | "no template"
  | "template of another PGlite"
  | "the directory holds other files"
  | `the template cannot be read (${string})`;

/**
 * Puts the template's files into `dir`, which must not exist yet: unpacked beside it and renamed
 * into place, so that a start interrupted half-way leaves no half-made database behind.
 */
export async function unpackPgliteTemplate(dir: string, file = TEMPLATE_FILE): Promise<Unpacked> {
  let info: TemplateInfo;
  let tgz: Buffer;
  try {
    info = JSON.parse(await readFile(infoFileOf(file), "utf8")) as TemplateInfo;
    tgz = await readFile(file);
  } catch (e) {
    // Unreadable (another user's build, a broken file): made the slow way instead, and said why.
    const code = (e as NodeJS.ErrnoException).code;
    return code === "ENOENT" ? "no template" : `the template cannot be read (${code ?? "not JSON"})`;
  }
  if (info.pglite !== pgliteVersion()) return "template of another PGlite";
  if ((await readdir(dir).catch(() => [])).length > 0) return "the directory holds other files";
  // What a start interrupted while unpacking left beside it (the caller holds the data directory's lock).
  const prefix = `${basename(dir)}.new-`;
  for (const name of await readdir(dirname(dir)).catch(() => []))
    if (name.startsWith(prefix)) await rm(join(dirname(dir), name), { recursive: true, force: true });
  const making = `${dir}.new-${randomBytes(4).toString("hex")}`;
  try {
    await untar(gunzipSync(tgz), making);
    await rename(making, dir);
  } finally {
    await rm(making, { recursive: true, force: true });
  }
  return "unpacked";
}

export const infoFileOf = (file: string) => `${file.replace(/\.tgz$/, "")}.json`;

/**
 * Writes a ustar archive's directories and regular files under `root` (owner-only, as the data
 * directory is). Anything else in it, or a name that would leave `root`, is refused: the archive
 * is ours, but a damaged one must not write elsewhere.
 */
export async function untar(tar: Buffer, root: string): Promise<void> {
  await mkdir(root, { recursive: true, mode: 0o700 });
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const field = (from: number, length: number) =>
      header
        .subarray(from, from + length)
        .toString("utf8")
        .replace(/\0.*$/s, "");
    const sum = header.reduce((a, b, i) => a + (i >= 148 && i < 156 ? 32 : b), 0);
    if (Number.parseInt(field(148, 8).trim(), 8) !== sum)
      throw new Error(
        `the embedded database template is damaged (a header at byte ${at} fails its checksum)`,
      );
    const name = [field(345, 155), field(0, 100)].filter(Boolean).join("/");
    const size = Number.parseInt(field(124, 12).trim() || "0", 8);
    const type = field(156, 1) || "0";
    const target = normalize(join(root, name));
    const inside = target === root || target.startsWith(root + sep);
    if (!Number.isFinite(size) || at + 512 + size > tar.length || !inside)
      throw new Error(`the embedded database template is damaged (entry '${name}')`);
    if (type === "5") await mkdir(target, { recursive: true, mode: 0o700 });
    else if (type === "0") {
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await writeFile(target, tar.subarray(at + 512, at + 512 + size), { mode: 0o600 });
    } else throw new Error(`the embedded database template holds an entry of type '${type}' ('${name}')`);
    at += 512 + Math.ceil(size / 512) * 512;
  }
}
