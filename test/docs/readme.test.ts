import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { COMMANDS } from "../../src/cli/commands/index.js";
import { SETTING_NAMES } from "../../src/config.js";

/**
 * The README is what a newcomer follows: these tests keep the parts of it that the code can check
 * true. Each failure names what to document (or to remove) and where.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const README = readFileSync(join(ROOT, "README.md"), "utf8");
const SKIP_DIRS = new Set(["node_modules", "dist", ".git", ".butler"]);

/** The text of a `## ` section, up to the next one. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README has no "## ${title}" section`);
  const next = README.indexOf("\n## ", start + 1);
  return README.slice(start, next < 0 ? undefined : next);
}

/** Every file under `dir` (relative to the repository), skipping dependencies and build output. */
function files(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    if (SKIP_DIRS.has(e.name)) return [];
    const rel = dir ? `${dir}/${e.name}` : e.name;
    return e.isDirectory() ? files(rel) : [rel];
  });
}
const ALL_FILES = files("");
const SRC = ALL_FILES.filter((f) => f.startsWith("src/") && f.endsWith(".ts"));

/** Source text without comments, so that an example in a doc comment is not taken for a read. */
const code = (f: string) =>
  readFileSync(join(ROOT, f), "utf8")
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/(^|\s)\/\/.*$/gm, "$1");

describe("README: every CLI command", () => {
  const cli = section("CLI");
  /** The commands the CLI table names: the words after `butler` up to the first argument. */
  const documented = [...cli.matchAll(/^\| `butler ([a-z][a-z -]*?)(?=[ `][^a-z]|`)/gm)].map((m) => m[1]!);

  test("each command of src/cli/commands/ has a row in the CLI table", () => {
    const missing = COMMANDS.map((c) => c.name).filter((n) => !documented.includes(n));
    expect(
      missing,
      `commands missing from README's CLI table (## CLI): add a row "| \`butler <name> <usage>\` | what it does |" for each`,
    ).toEqual([]);
  });

  test("each row of the CLI table names a command that exists", () => {
    expect(documented.length).toBeGreaterThan(10);
    const names = new Set(COMMANDS.map((c) => c.name));
    expect(
      documented.filter((n) => !names.has(n)),
      "README's CLI table names commands that src/cli/commands/ does not have",
    ).toEqual([]);
  });
});

describe("README: every setting", () => {
  const configuration = section("Configuration");
  const inTable = (name: string) =>
    configuration.includes(`\`${name}\``) ||
    // "`BUTLER_ADMIN_TOKEN` / `_FILE`" documents both.
    (name.endsWith("_FILE") && configuration.includes(`\`${name.slice(0, -5)}\` / \`_FILE\``));

  /** Literal environment reads anywhere in src/ (`env.X`, `env?.X`, `env["X"]`, `process.env.X`). */
  const reads = SRC.flatMap((f) =>
    [...code(f).matchAll(/\benv(?:\?\.|\.|\[["'`])([A-Z][A-Z0-9_]*)/g)].map((m) => ({
      file: f,
      name: m[1]!,
    })),
  );

  test("the settings src/ reads are all found (config.ts's schema and any direct read)", () => {
    expect(SETTING_NAMES).toEqual(
      expect.arrayContaining(["PORT", "LOG_FORMAT", "SLACK_API_URL", "DATABASE_URL_FILE"]),
    );
    // A read by a computed name could not be checked here: name the setting in src/config.ts.
    const dynamic = SRC.flatMap((f) =>
      code(f)
        .split("\n")
        .flatMap((l, i) => (/\benv\[(?!["'`][A-Z])/.test(l) ? [`${f}:${i + 1}: ${l.trim()}`] : [])),
    );
    expect(dynamic, "environment variables read by a computed name").toEqual([]);
  });

  test("each one has a row in the Configuration table", () => {
    const names = new Set([...SETTING_NAMES, ...reads.map((r) => r.name)]);
    expect(
      [...names].filter((n) => !inTable(n)).sort(),
      "settings read in src/ (src/config.ts, or env reads elsewhere) missing from README's settings table (## Configuration)",
    ).toEqual([]);
  });

  test("the credentials and webhook secrets the shipped provider specs name are documented", () => {
    const named = ALL_FILES.filter((f) => /^providers\/[^/]+\.yaml$/.test(f)).flatMap((f) => {
      const spec = parse(readFileSync(join(ROOT, f), "utf8")) as {
        auth?: { credential?: string };
        webhooks?: { secret?: string };
      };
      return [spec.auth?.credential, spec.webhooks?.secret].filter((n): n is string => !!n);
    });
    expect(named.length).toBeGreaterThan(2);
    expect(named.filter((n) => !inTable(n))).toEqual([]);
  });

  test("each variable the table lists is one Butler reads", () => {
    const example = readFileSync(join(ROOT, ".env.example"), "utf8");
    expect(
      SETTING_NAMES.filter(
        // `<NAME>_FILE` variants are described once, next to their setting.
        (n) =>
          !(n.endsWith("_FILE") && SETTING_NAMES.includes(n.slice(0, -"_FILE".length))) &&
          !new RegExp(`^#? ?${n}=`, "m").test(example),
      ),
      ".env.example (which the README says lists every setting) lacks",
    ).toEqual([]);
    const listed = [...configuration.matchAll(/^\| `([A-Z][A-Z0-9_]*)`/gm)].map((m) => m[1]!);
    expect(listed.length).toBeGreaterThan(20);
    const known = new Set([...SETTING_NAMES, ...reads.map((r) => r.name)]);
    expect(
      listed.filter((n) => !known.has(n)),
      "rows for settings nothing reads",
    ).toEqual([]);
  });
});

describe("README: every path it names exists", () => {
  const TOP = /^(src|test|docs|examples|policies|providers|public|bench|migrations|bin|\.ci)\//;
  /** Made at run time in the data directory, not shipped. */
  const RUNTIME = new Set(["./.butler", "server.json"]);
  const basenames = new Set(ALL_FILES.map((f) => f.slice(f.lastIndexOf("/") + 1)));
  const exists = (p: string) => existsSync(join(ROOT, p));

  test("paths in backticks and links", () => {
    const named = new Set<string>();
    for (const m of README.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g))
      if (!/^[a-z]+:/.test(m[1]!)) named.add(m[1]!);
    for (const m of README.matchAll(/`([^`\s]+)`/g)) {
      const t = m[1]!;
      if (/[<>*{}$]/.test(t)) continue;
      if (TOP.test(t) || t.startsWith("../") || t.startsWith("./")) named.add(t);
      else if (/^[\w.-]+\.(ts|js|md|yaml|json|css|png)$/.test(t)) named.add(t);
    }
    expect(named.size).toBeGreaterThan(20);
    const gone = [...named].filter(
      (p) => !RUNTIME.has(p) && (p.includes("/") ? !exists(p) : !basenames.has(p)),
    );
    expect(gone, "README names files or folders that are not in the repository").toEqual([]);
  });

  test("the development layout's folders and the files it lists in each", () => {
    const dev = section("Development");
    const block = /\nLayout[^\n]*\n+```\n([\s\S]*?)\n```/.exec(dev)?.[1];
    expect(block, "the layout block of ## Development").toBeDefined();
    const gone: string[] = [];
    let dir = "";
    for (const line of block!.split("\n")) {
      const head = /^(\S+)\s/.exec(line)?.[1];
      if (head) {
        dir = head.replace(/\/$/, "");
        if (!exists(dir)) gone.push(head);
      }
      // Every file name the entry lists lives in its folder (or a subfolder, or src/).
      for (const m of line
        .slice(head ? head.length : 0)
        .matchAll(/(?<![\w<>/*-])([\w/-]+\.(?:ts|js|yaml|json))\b/g)) {
        const name = m[1]!;
        const under = ALL_FILES.some((f) => f.startsWith(`${dir}/`) && f.endsWith(`/${name}`));
        if (!under && !exists(`src/${name}`)) gone.push(`${dir}/: ${name}`);
      }
    }
    expect(gone, "README's development layout names folders or files that are gone").toEqual([]);
  });
});

describe("slack-app-manifest.yaml", () => {
  test("sends presses to the route Butler serves, in HTTP mode, with the scopes the channel uses", () => {
    const manifest = parse(readFileSync(join(ROOT, "slack-app-manifest.yaml"), "utf8")) as {
      settings: { interactivity: { is_enabled: boolean; request_url: string }; socket_mode_enabled: boolean };
      oauth_config: { scopes: { bot: string[] } };
    };
    const channel = readFileSync(join(ROOT, "src/channels/slack/slack-channel.ts"), "utf8");
    const route = new URL(manifest.settings.interactivity.request_url).pathname;
    expect(channel).toContain(`f.post("${route}"`);
    expect(manifest.settings).toMatchObject({
      interactivity: { is_enabled: true },
      socket_mode_enabled: false,
    });
    // chat.postMessage/update/postEphemeral, conversations.open (direct messages), users.info, users.lookupByEmail.
    expect(manifest.oauth_config.scopes.bot).toEqual(
      expect.arrayContaining(["chat:write", "im:write", "users:read", "users:read.email"]),
    );
  });
});

describe("README: every npm script it runs", () => {
  test("exists in package.json", () => {
    const scripts = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: object })
      .scripts;
    const named = [...new Set([...README.matchAll(/\bnpm run ([a-z][\w:-]*)/g)].map((m) => m[1]!))];
    expect(named).toEqual(expect.arrayContaining(["demo", "stand-in:stripe", "stand-in:chat"]));
    expect(named.filter((n) => !(n in scripts))).toEqual([]);
  });
});
