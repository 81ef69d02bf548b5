import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, onTestFinished, test } from "vitest";
import { loadConfig } from "../src/config.js";

describe("configuration", () => {
  test("defaults: embedded database under ./.butler, policies from ./policies, loopback port 8080", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      host: "127.0.0.1",
      port: 8080,
      publicUrl: undefined,
      dataDir: resolve(".butler"),
      database: { kind: "pglite", dataDir: resolve(".butler/pglite") },
      policiesDir: resolve("policies"),
      policyWatch: true,
      logLevel: "info",
      audit: { batchMax: 1000, queueMax: 50000, durability: "sync" },
    });
  });

  test("AUDIT_DURABILITY: sync by default; async-deny and async on PostgreSQL only; anything else is named", () => {
    const pgUrl = "postgres://u@h:5432/db";
    expect(loadConfig({ DATABASE_URL: pgUrl }).audit.durability).toBe("sync");
    for (const mode of ["sync", "async-deny", "async"] as const)
      expect(loadConfig({ DATABASE_URL: pgUrl, AUDIT_DURABILITY: mode }).audit.durability).toBe(mode);
    expect(loadConfig({ DATABASE_URL: pgUrl, AUDIT_DURABILITY: " Async-Deny " }).audit.durability).toBe(
      "async-deny",
    );
    expect(loadConfig({ AUDIT_DURABILITY: "sync" }).audit.durability).toBe("sync");
    expect(() => loadConfig({ DATABASE_URL: pgUrl, AUDIT_DURABILITY: "fast" })).toThrow(
      "AUDIT_DURABILITY must be sync (the default: every answer waits for its audit line to reach the disk), async-deny (DENY answers do not wait for the disk flush) or async (no answer waits for it)",
    );
    // The embedded database has no background writer: an unflushed commit could wait without bound.
    for (const mode of ["async-deny", "async"])
      expect(() => loadConfig({ AUDIT_DURABILITY: mode })).toThrow(
        `AUDIT_DURABILITY=${mode} needs PostgreSQL (DATABASE_URL)`,
      );
  });

  test("DATABASE_URL switches to PostgreSQL; empty values count as unset", () => {
    expect(loadConfig({ DATABASE_URL: "postgres://u@h:5432/db", DATABASE_POOL_SIZE: "20" }).database).toEqual(
      {
        kind: "postgres",
        url: "postgres://u@h:5432/db",
        poolSize: 20,
        timeoutMs: 2000,
      },
    );
    expect(
      loadConfig({ DATABASE_URL: "postgres://u@h:5432/db", DATABASE_TIMEOUT_MS: "500" }).database,
    ).toMatchObject({ timeoutMs: 500 });
    expect(() => loadConfig({ DATABASE_URL: "postgres://u@h/db", DATABASE_TIMEOUT_MS: "5" })).toThrow(
      "DATABASE_TIMEOUT_MS must be between 100 and 600000",
    );
    expect(loadConfig({ DATABASE_URL: "", PORT: " " }).database.kind).toBe("pglite");
  });

  test("secrets can come from *_FILE", async () => {
    const dir = await mkdtemp(join(tmpdir(), "butler-cfg-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, "db"), "postgresql://from-file/db\n");
    expect(loadConfig({ DATABASE_URL_FILE: join(dir, "db") }).database).toMatchObject({
      url: "postgresql://from-file/db",
    });
    expect(() => loadConfig({ DATABASE_URL_FILE: join(dir, "missing") })).toThrow(
      /DATABASE_URL_FILE: cannot read .*missing: ENOENT/,
    );
    expect(() => loadConfig({ DATABASE_URL_FILE: join(dir, "db"), DATABASE_URL: "postgres://x" })).toThrow(
      /either DATABASE_URL or DATABASE_URL_FILE/,
    );
  });

  test("every bad value is reported at once, by name", () => {
    let message = "";
    try {
      loadConfig({
        PORT: "99999",
        POLICY_WATCH: "maybe",
        BUTLER_PUBLIC_URL: "ftp://x",
        BUTLER_ADMIN_TOKEN: "short",
        AUDIT_BATCH_MAX: "0",
      });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message.split("\n")).toEqual([
      "Invalid configuration:",
      "- PORT must be between 0 and 65535",
      "- BUTLER_PUBLIC_URL must be an http:// or https:// URL",
      "- POLICY_WATCH must be true or false",
      "- AUDIT_BATCH_MAX must be between 1 and 10000",
      "- BUTLER_ADMIN_TOKEN must be at least 32 characters",
    ]);
  });

  test("BUTLER_PROVIDER_PORTS: provider=port pairs; anything else is named", () => {
    expect(loadConfig({ BUTLER_PROVIDER_PORTS: "stripe=12111, revolut=0" }).providers.ports).toEqual({
      stripe: 12111,
      revolut: 0,
    });
    for (const bad of ["stripe", "stripe=70000", "stripe=http://x", "Stripe=1"])
      expect(() => loadConfig({ BUTLER_PROVIDER_PORTS: bad })).toThrow(
        "BUTLER_PROVIDER_PORTS must be a comma-separated list of provider=port entries, e.g. stripe=12111",
      );
  });
});
