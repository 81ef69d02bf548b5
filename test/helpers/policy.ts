import { readFileSync } from "node:fs";
import {
  compilePolicies,
  type PolicyDocument,
  type PolicyIndex,
  parsePolicyFile,
} from "../../src/policy/index.js";

/**
 * The project the tests are written against: a copy of the shipped example, so that editing
 * policies/project-billing.yaml (as the README invites) changes no test. The shipped file is
 * checked on its own (SHIPPED_POLICY_FILE: it must parse).
 */
export const SEED_POLICY_FILE = new URL("../fixtures/project-billing.yaml", import.meta.url);
export const SHIPPED_POLICY_FILE = new URL("../../policies/project-billing.yaml", import.meta.url);

/** Parses a policy text and fails the test with every issue if it does not parse. */
export function doc(text: string, file = "test.yaml"): PolicyDocument {
  const r = parsePolicyFile({ file, text });
  if (!r.ok)
    throw new Error(
      `policy did not parse:\n${r.error.map((i) => `${i.line}:${i.col} ${i.path} ${i.message}`).join("\n")}`,
    );
  return r.value;
}

export function index(...texts: string[]): PolicyIndex {
  return compilePolicies(texts.map((t, i) => ({ document: doc(t), revision: i + 1 })));
}

export function seedText(): string {
  return readFileSync(SEED_POLICY_FILE, "utf8");
}
