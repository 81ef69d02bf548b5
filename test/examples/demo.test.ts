import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { ENGINE } from "../helpers/db.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

/** `npm run demo` always runs on embedded PGlite, so one run (in the PGlite pass) is enough. */
describe.skipIf(ENGINE === "postgres")("npm run demo", () => {
  test("tells the seed scenario over A2A and ends with a verified chain", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "examples/demo.ts"], {
      cwd: root,
      env: { ...process.env, NO_COLOR: "1", DATABASE_URL: "" },
      timeout: 60_000,
    });
    const lines = stdout.split("\n");
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    const steps = [
      at(/^agent +asks: DENY \(no policy grants stripe:\* for project-billing/),
      at(/^agent +files an access request over A2A/),
      at(/^agent +A2A task task_\w+: waiting for 1 approval from project-billing approvers/),
      at(/^jordan +approves through the REST API: HTTP 200/),
      at(/^agent +retries: ALLOW \(allowed by grant req_\w+ of project-billing/),
      at(/^agent +read 3 charges from Stripe through the gateway/),
      at(/^butler +the stand-in Stripe saw Butler's key on 1 request\(s\), never the agent's token: true/),
      at(/^Chain verification: verified, \d+ events through seq \d+/),
    ];
    expect(
      steps.every((i) => i >= 0),
      stdout,
    ).toBe(true);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect(lines.some((l) => /^agent +A2A task task_\w+: granted by jordan via api until /.test(l))).toBe(
      true,
    );
    const audit = lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    // The seed loop, in order, one audit line per step.
    const steps2 = [
      "gateway.denied",
      "access_request.filed",
      "policy.proposed",
      "a2a.task_opened",
      "access_request.approved",
      "grant.applied",
      "gateway.allowed",
      "gateway.allowed",
      "provider.called",
    ];
    expect(audit.map((e) => e.type).filter((t) => steps2.includes(t))).toEqual(steps2);
    // The A2A notification is audited once delivered (it races the agent's retry, so no order).
    expect(audit.filter((e) => e.type === "agent.notified")).toEqual([
      expect.objectContaining({ notification: "grant_ready", a2a_tasks: 1 }),
    ]);
  });
});
