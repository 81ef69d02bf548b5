import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { describe, expect, onTestFinished, test } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));

describe("npm run stand-in:stripe", () => {
  test("serves the stand-in on its own, prints its URL and how to point Butler at it", async () => {
    // What `npm run stand-in:stripe -- --port 0` runs (npm would add a process in between).
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "examples/stand-in-stripe-serve.ts", "--port", "0"],
      {
        cwd: root,
        // A key in the shell is never taken up or printed: it may be a real one.
        env: { ...process.env, STRIPE_API_KEY: "sk_live_in_the_shell" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    onTestFinished(async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    });
    let out = "";
    child.stdout.setEncoding("utf8");
    const printed = new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (c: string) => {
        out += c;
        if (out.includes("npm start\n")) resolve(out);
      });
      child.once("exit", (code) => reject(new Error(`exited with ${code} before printing its URL: ${out}`)));
    });
    const text = await printed;
    const url = /Stand-in Stripe at (http:\/\/127\.0\.0\.1:\d+) /.exec(text)?.[1];
    expect(url, text).toBeDefined();
    expect(text).toContain(
      `BUTLER_PROVIDER_URLS=stripe=${url} STRIPE_API_KEY=sk_test_butler_stand_in_0000 npm start`,
    );
    expect(text).not.toContain("sk_live_in_the_shell");

    const charges = await fetch(`${url}/v1/charges?limit=2`, {
      headers: { authorization: "Bearer sk_test_butler_stand_in_0000" },
    });
    expect(charges.status).toBe(200);
    expect(await charges.json()).toMatchObject({
      object: "list",
      data: [{ object: "charge" }, { object: "charge" }],
    });
    expect((await fetch(`${url}/v1/charges`, { headers: { authorization: "Bearer sk_other" } })).status).toBe(
      401,
    );

    child.kill("SIGTERM");
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
    expect(out).toContain("GET /v1/charges (key ok)\nGET /v1/charges (wrong or no key: 401)\n");
  });
});
