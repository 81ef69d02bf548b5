import { describe, expect, test } from "vitest";
import { parsePolicyFile } from "../../src/policy/index.js";

const policy = (security: string) => `project: p
agents: [a]
security:
${security}`;

/** The policy's security section: where alerts go, and what it refuses to hold. */
describe("security: in a policy", () => {
  test("a webhook URL with a user name or password is refused, naming the key; one without is taken", () => {
    const bad = parsePolicyFile({
      file: "p.yaml",
      text: policy("  webhook_url: https://user:hunter2@siem.example.com/hook\n"),
    });
    expect(bad.ok).toBe(false);
    expect(JSON.stringify(bad)).toContain("must not hold a user name or password");
    const good = parsePolicyFile({
      file: "p.yaml",
      text: policy("  webhook_url: https://siem.example.com/hook\n"),
    });
    expect(good.ok && good.value.security?.webhookUrl).toBe("https://siem.example.com/hook");
  });

  test("a section that sends alerts nowhere, or a secret without a URL, is refused", () => {
    expect(parsePolicyFile({ file: "p.yaml", text: policy("  alert_on: [drift_major]\n") }).ok).toBe(false);
    const secretOnly = parsePolicyFile({
      file: "p.yaml",
      text: policy("  slack: [C0SECURITY]\n  webhook_secret: SECURITY_WEBHOOK_SECRET\n"),
    });
    expect(JSON.stringify(secretOnly)).toContain("needs webhook_url");
  });
});
