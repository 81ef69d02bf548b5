import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const run = promisify(execFile);
const BIN = join(process.cwd(), "bin", "butler.js");

/** Packages only the server, the database path or a chat channel needs: the CLI's light paths load none. */
const HEAVY = [
  "fastify",
  "@electric-sql/pglite",
  "drizzle-orm",
  "pg",
  "@slack/bolt",
  "@slack/web-api",
  "grammy",
  "@a2a-js/sdk",
  "pino",
  "prom-client",
];

// The check is on what is loaded, not on time: a module-resolution hook (module.register) in the
// child process appends every module URL it resolves to a file.
describe(`what the butler command loads (${ENGINE})`, () => {
  let dir: string;
  let t: TestServer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "butler-modules-"));
    await writeFile(
      join(dir, "hooks.mjs"),
      `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.BUTLER_TEST_MODULE_LOG, r.url + "\\n");
  return r;
}
`,
    );
    await writeFile(
      join(dir, "register.mjs"),
      `import { register } from "node:module";\nregister(new URL("./hooks.mjs", import.meta.url));\n`,
    );
    t = await startTestServer();
  });
  afterAll(async () => {
    await t?.stop();
    await t?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  let n = 0;
  /** Runs bin/butler.js with `args` and returns the packages it loaded (by name) and its own files. */
  async function loaded(args: string[], env: Record<string, string> = {}) {
    const log = join(dir, `modules-${++n}.log`);
    await writeFile(log, "");
    await run("node", ["--import", join(dir, "register.mjs"), BIN, ...args], {
      env: { ...process.env, ...env, BUTLER_TEST_MODULE_LOG: log },
    });
    const urls = (await readFile(log, "utf8")).split("\n").filter(Boolean);
    const packages = new Set(
      urls.flatMap((u) => {
        const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u);
        return m ? [m[1]!] : [];
      }),
    );
    return { packages: [...packages], files: urls.filter((u) => u.includes("/dist/")) };
  }

  test("butler --help loads the command table only: no package, no implementation", async () => {
    for (const args of [["--help"], ["agents", "create", "--help"], ["policy", "--help"]]) {
      const r = await loaded(args);
      expect(r.packages, args.join(" ")).toEqual([]);
      expect(r.files.filter((f) => !f.includes("/dist/cli/") || f.includes("/dist/cli/run/"))).toEqual([
        expect.stringMatching(/\/dist\/errors\.js$/),
      ]);
    }
  });

  test("policy validate, and an admin command through a running server, load no server or database", async () => {
    const validate = await loaded(["policy", "validate", t.policiesDir]);
    for (const p of HEAVY) expect(validate.packages, p).not.toContain(p);
    const list = await loaded(["agents", "list", "--json"], t.env);
    for (const p of HEAVY) expect(list.packages, p).not.toContain(p);
    expect(list.files.some((f) => f.endsWith("/dist/cli/run/access.js"))).toBe(true);
  });
});
