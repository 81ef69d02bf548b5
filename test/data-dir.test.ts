import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, onTestFinished, test } from "vitest";
import { acquireDataDirLock } from "../src/data-dir.js";

async function dir() {
  const d = await mkdtemp(join(tmpdir(), "butler-lock-"));
  onTestFinished(() => rm(d, { recursive: true, force: true }));
  return d;
}

test("of several concurrent attempts exactly one takes the embedded database's lock", async () => {
  const d = await dir();
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => acquireDataDirLock(d, "test")));
  const won = results.filter((r) => r.status === "fulfilled");
  expect(won).toHaveLength(1);
  for (const r of results)
    if (r.status === "rejected")
      expect(r.reason).toMatchObject({
        code: "IN_USE",
        message: expect.stringContaining(`in use by process ${process.pid}`),
      });
  await (won[0] as PromiseFulfilledResult<() => Promise<void>>).value();
  expect(existsSync(join(d, "butler.lock"))).toBe(false);
  const again = await acquireDataDirLock(d, "test");
  await again();
});

test("a lock left by a dead process is taken over; an unreadable one is respected", async () => {
  const d = await dir();
  await writeFile(join(d, "butler.lock"), JSON.stringify({ pid: 2 ** 22 + 12345, purpose: "gone" }));
  const release = await acquireDataDirLock(d, "test");
  expect(JSON.parse(await readFile(join(d, "butler.lock"), "utf8")).pid).toBe(process.pid);
  await release();

  await writeFile(join(d, "butler.lock"), "{half-written");
  await expect(acquireDataDirLock(d, "test")).rejects.toThrow(/exists but cannot be read/);
});

test("releasing does not remove a lock that another process has taken since", async () => {
  const d = await dir();
  const release = await acquireDataDirLock(d, "test");
  const other = JSON.stringify({ pid: process.pid, purpose: "someone else" });
  await writeFile(join(d, "butler.lock"), other);
  await release();
  expect(await readFile(join(d, "butler.lock"), "utf8")).toBe(other);
});
