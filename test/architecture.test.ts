import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect, test } from "vitest";

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

async function imports(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8");
  return [...text.matchAll(/^import\s[^;]*?from\s+"([^"]+)"/gm)].map((m) => m[1]!);
}

test("the policy core is pure: it imports only yaml, zod, diff and its own modules", async () => {
  for (const f of await files("src/policy")) {
    for (const spec of await imports(f)) {
      const allowed =
        ["yaml", "zod", "diff", "../result.js", "../yaml-file.js"].includes(spec) || spec.startsWith("./");
      expect(allowed, `${f} imports ${spec}`).toBe(true);
    }
  }
  // The YAML file parser it shares with provider specs is just as pure.
  for (const spec of await imports("src/yaml-file.ts"))
    expect(["yaml", "zod", "./result.js"]).toContain(spec);
});

test("the audit chain is pure, and nothing but the composition roots build the HTTP server", async () => {
  for (const spec of await imports("src/audit/chain.ts")) expect(["node:crypto"]).toContain(spec);
  for (const f of await files("src")) {
    if (f === join("src", "main.ts") || f.startsWith(join("src", "server"))) continue;
    for (const spec of await imports(f)) expect(spec, `${f} imports ${spec}`).not.toMatch(/server\/app\.js$/);
  }
});
