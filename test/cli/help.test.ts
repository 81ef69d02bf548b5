import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { args } from "../../src/cli/command.js";
import { COMMANDS } from "../../src/cli/commands/index.js";
import { runCli } from "../helpers/server.js";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const env = { BUTLER_DATA_DIR: "/nonexistent/butler-help-test" };
const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("butler <command> --help", () => {
  test.each(COMMANDS.map((c) => [c.name, c] as const))(
    "butler %s --help prints its usage",
    async (name, c) => {
      const r = await runCli([...name.split(" "), "--help"], env);
      expect(r).toMatchObject({ code: 0, stderr: "" });
      expect(r.stdout.startsWith(`Usage: butler ${name}${c.usage ? ` ${c.usage}` : ""}\n`)).toBe(true);
      expect(r.stdout).toContain(c.summary.replaceAll("\n", " "));
      // Every option it takes, and an example that names the command.
      for (const [flag, o] of Object.entries(c.options ?? {}))
        expect(r.stdout).toMatch(
          new RegExp(`\\n  --${flag}${o.value ? ` ${o.value}` : ""}\\b.* ${reEscape(o.help)}\\n`),
        );
      expect(r.stdout).toContain("  --json ");
      expect(r.stdout).toContain(`\nExample:\n  `);
      expect(c.example).toMatch(new RegExp(`(^|\\| )butler ${reEscape(name)}( |$)`));
      expect(r.stdout).toContain(`\nExample:\n  ${c.example}\n`);
      // The same text through `help`, and with the command's own arguments in front of --help.
      expect(await runCli(["help", ...name.split(" ")], env)).toEqual(r);
      expect(await runCli([...name.split(" "), "x", "--json", "-h"], env)).toEqual(r);
    },
  );

  test("butler --help lists every command; a group's --help lists the group's", async () => {
    const all = await runCli(["--help"], env);
    expect(all.code).toBe(0);
    for (const c of COMMANDS) expect(all.stdout).toContain(`  ${c.name}`);
    expect(await runCli(["help"], env)).toEqual(all);
    const policy = await runCli(["policy", "--help"], env);
    expect(policy.code).toBe(0);
    expect(policy.stdout.startsWith("Usage: butler policy <command> [options]\n")).toBe(true);
    const listed = COMMANDS.filter(
      (c) => policy.stdout.includes(`  ${c.name} `) || policy.stdout.includes(`  ${c.name}\n`),
    );
    expect(listed.map((c) => c.name)).toEqual(
      COMMANDS.filter((c) => c.name.startsWith("policy ")).map((c) => c.name),
    );
    // Every group, also one of a single command (`butler db --help`), lists exactly its commands.
    const groups = [
      ...new Set(COMMANDS.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0]!)),
    ];
    expect(groups).toEqual(expect.arrayContaining(["db", "providers", "auditors", "dashboard", "telegram"]));
    for (const g of groups) {
      const help = await runCli([g, "--help"], env);
      expect(help, g).toMatchObject({ code: 0, stderr: "" });
      expect(help.stdout.startsWith(`Usage: butler ${g} <command> [options]\n`), g).toBe(true);
      const names = COMMANDS.filter(
        (c) => help.stdout.includes(`  ${c.name} `) || help.stdout.includes(`  ${c.name}\n`),
      );
      expect(
        names.map((c) => c.name),
        g,
      ).toEqual(COMMANDS.filter((c) => c.name.startsWith(`${g} `)).map((c) => c.name));
    }
    // Help for a command that does not exist is the whole list; running one is a usage error.
    expect(await runCli(["frobnicate", "--help"], env)).toEqual(all);
    expect(await runCli(["policy"], env)).toMatchObject({
      code: 2,
      stderr: "butler: unknown command: butler policy\nRun butler --help for usage.\n",
    });
  });

  test("every option a command's usage names is one it takes, and its example parses", async () => {
    for (const c of COMMANDS) {
      for (const [, flag] of c.usage.matchAll(/--([a-z-]+)/g))
        expect(Object.keys(c.options ?? {}), `${c.name}: --${flag}`).toContain(flag);
      // The example's words after the command name, cut at a shell redirection; parsed as given.
      const words = c.example
        .split("| ")
        .at(-1)!
        .split(" > ")[0]!
        .match(/"[^"]*"|\S+/g)!
        .map((w) => w.replace(/^"|"$/g, ""))
        .slice(1 + c.name.split(" ").length);
      expect(() => args(c, words), c.example).not.toThrow();
    }
  });

  test("the README's CLI table documents every command", () => {
    for (const c of COMMANDS) expect(README, c.name).toContain(`\`butler ${c.name}`);
  });
});

describe("a command called wrongly says what is wrong, for which command, and where its help is", () => {
  test.each([
    [
      ["requests", "list", "--as", "jordan"],
      "unknown option '--as' (it takes --json, --status, --project) for butler requests list",
    ],
    [["requests", "approve", "req_x", "--ttl"], "option '--ttl' needs a value for butler requests approve"],
    [["agents", "list", "--json=1"], "option '--json' takes no value for butler agents list"],
    [
      ["policy", "validate", "a", "sk_live_typed_by_mistake"],
      "unexpected argument (argument 2; it takes 1) for butler policy validate",
    ],
    [["requests", "show"], "missing argument for butler requests show"],
  ])("butler %j", async (argv, problem) => {
    const name = argv.slice(0, 2).join(" ");
    expect(await runCli(argv, env)).toEqual({
      code: 2,
      stdout: "",
      stderr: `butler: ${problem}; see butler ${name} --help\n`,
    });
  });
});
