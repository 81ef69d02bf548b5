import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { PGlite } from "@electric-sql/pglite";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { loadConfig } from "../src/config.js";
import {
  infoFileOf,
  pgliteVersion,
  TEMPLATE_FILE,
  unpackPgliteTemplate,
  untar,
} from "../src/db/pglite-template.js";
import { createLogger } from "../src/logger.js";
import { startServer } from "../src/main.js";
import { ENGINE } from "./helpers/db.js";
import { SEED_POLICY_FILE } from "./helpers/policy.js";

/** One ustar entry (header and padded data), as tar writes it. */
function entry(name: string, data: string, type = "0"): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, "utf8");
  header.write("0000600\0", 100);
  header.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
  header.write(type, 156);
  header.write("ustar\0", 257);
  header.write("        ", 148);
  const sum = header.reduce((a, b) => a + b, 0);
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const body = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  body.write(data);
  return Buffer.concat([header, body]);
}
const archive = (...entries: Buffer[]) => Buffer.concat([...entries, Buffer.alloc(1024)]);

describe("unpacking a data directory archive", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-untar-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test("directories and files land under the root, owner-only, with their bytes", async () => {
    const root = join(dir, "ok");
    await untar(
      archive(entry("/base", "", "5"), entry("/base/1", "x".repeat(700)), entry("/PG_VERSION", "17\n")),
      root,
    );
    expect(await readFile(join(root, "PG_VERSION"), "utf8")).toBe("17\n");
    expect(await readFile(join(root, "base", "1"), "utf8")).toBe("x".repeat(700));
    expect((await stat(join(root, "base", "1"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, "base"))).mode & 0o777).toBe(0o700);
  });

  test.each([
    [
      "a name that climbs out of the root",
      archive(entry("../../escaped", "x")),
      /entry '\.\.\/\.\.\/escaped'/,
    ],
    ["a symbolic link", archive(entry("/link", "", "2")), /entry of type '2' \('\/link'\)/],
    [
      "an entry whose data runs past the end of the archive",
      entry("/PG_VERSION", "17\n".repeat(400)).subarray(0, 1024),
      /entry '\/PG_VERSION'/,
    ],
    [
      "a header whose checksum does not match",
      (() => {
        const a = archive(entry("/PG_VERSION", "17\n"));
        a[0] = "Q".charCodeAt(0);
        return a;
      })(),
      /fails its checksum/,
    ],
  ])("refused: %s, and nothing is written outside the root", async (_what, tar, message) => {
    const root = join(dir, "bad", String(Math.random()).slice(2));
    await expect(untar(tar, root)).rejects.toThrow(message);
    expect(await readdir(join(dir, "bad")).then((d) => d.length)).toBeGreaterThan(0);
    await expect(stat(join(dir, "escaped"))).rejects.toThrow(/ENOENT/);
  });
});

/** The template `npm run build` made (scripts/build-pglite-template.mjs). */
describe.skipIf(ENGINE === "postgres")("the embedded database template", () => {
  let dir: string;
  const file = TEMPLATE_FILE;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-template-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test("unpacks into a migrated database that PGlite opens as it is, clearing what an interrupted unpack left", async () => {
    const target = join(dir, "db-1");
    await mkdir(join(dir, "db-1.new-deadbeef", "base"), { recursive: true });
    await writeFile(join(dir, "db-1.new-deadbeef", "base", "half"), "x");
    expect(await unpackPgliteTemplate(target, file)).toBe("unpacked");
    const client = await PGlite.create(target);
    try {
      const head = await client.query<{ seq: number }>("SELECT seq FROM audit_head");
      expect(head.rows).toEqual([{ seq: 0 }]);
      const applied = await client.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations",
      );
      const journal = JSON.parse(await readFile("migrations/meta/_journal.json", "utf8")) as {
        entries: unknown[];
      };
      expect(applied.rows[0]!.n).toBe(journal.entries.length);
    } finally {
      await client.close();
    }
    expect((await readdir(dir)).filter((n) => n.includes(".new-"))).toEqual([]);
  });

  test("is not used when missing, made by another PGlite, or when the directory holds other files", async () => {
    expect(await unpackPgliteTemplate(join(dir, "db-2"), join(dir, "nowhere.tgz"))).toBe("no template");
    const other = join(dir, "other", "pglite-template.tgz");
    await mkdir(join(dir, "other"));
    await writeFile(other, gzipSync(archive(entry("/PG_VERSION", "17\n"))));
    await writeFile(infoFileOf(other), JSON.stringify({ pglite: `${pgliteVersion()}-other` }));
    expect(await unpackPgliteTemplate(join(dir, "db-3"), other)).toBe("template of another PGlite");
    await writeFile(infoFileOf(other), "{half");
    expect(await unpackPgliteTemplate(join(dir, "db-3"), other)).toBe(
      "the template cannot be read (not JSON)",
    );
    await expect(stat(join(dir, "db-3"))).rejects.toThrow(/ENOENT/);
    await mkdir(join(dir, "db-4"));
    await writeFile(join(dir, "db-4", "notes.txt"), "mine");
    expect(await unpackPgliteTemplate(join(dir, "db-4"), file)).toBe("the directory holds other files");
    expect(await readdir(join(dir, "db-4"))).toEqual(["notes.txt"]);
  });

  test("butler serve on a new data directory starts from the shipped template and says what it does", async () => {
    const home = join(dir, "serve");
    await mkdir(join(home, "policies"), { recursive: true });
    await writeFile(join(home, "policies", "project-billing.yaml"), await readFile(SEED_POLICY_FILE, "utf8"));
    const lines: { msg: string; dir?: string }[] = [];
    const log = createLogger("info", { write: (s: string) => void lines.push(JSON.parse(s)) });
    const config = loadConfig({
      BUTLER_DATA_DIR: join(home, "data"),
      POLICIES_DIR: join(home, "policies"),
      PORT: "0",
      POLICY_WATCH: "false",
    });
    const server = await startServer(config, log);
    try {
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
    }
    const said = lines.map((l) => l.msg);
    const order = [
      "butler is starting",
      "created the embedded database from the shipped template",
      "database ready: migrations applied",
      "policies imported",
      "butler is serving",
    ].map((m) => said.findIndex((s) => s.startsWith(m)));
    expect(
      order.every((i) => i >= 0),
      said.join("\n"),
    ).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(said.some((m) => m.startsWith("no chat channel is configured"))).toBe(true);
  });
});
