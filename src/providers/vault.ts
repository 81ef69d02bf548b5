import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { asc, eq } from "drizzle-orm";
import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import type { ChangeBus } from "../db/changes.js";
import type { Db } from "../db/client.js";
import { credentials } from "../db/schema.js";
import { AppError } from "../errors.js";

export const CREDENTIAL_NAME = /^[A-Z][A-Z0-9_]{0,127}$/;
const MAX_VALUE = 16 * 1024;

/** The 8-hex-digit id of a master key: which key sealed a credential, without revealing it. */
export function keyIdOf(key: Buffer): string {
  return createHash("sha256").update("butler-credential-key").update(key).digest("hex").slice(0, 8);
}

/** AES-256-GCM with a random 96-bit IV; the credential's name is authenticated data. */
export function seal(key: Buffer, name: string, value: string) {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(name));
  const ciphertext = Buffer.concat([c.update(value, "utf8"), c.final()]);
  return {
    keyId: keyIdOf(key),
    iv: iv.toString("base64"),
    ciphertext: ciphertext.toString("base64"),
    tag: c.getAuthTag().toString("base64"),
  };
}

export function open(
  key: Buffer,
  name: string,
  row: { iv: string; ciphertext: string; tag: string },
): string {
  const d = createDecipheriv("aes-256-gcm", key, Buffer.from(row.iv, "base64"));
  d.setAAD(Buffer.from(name));
  d.setAuthTag(Buffer.from(row.tag, "base64"));
  return Buffer.concat([d.update(Buffer.from(row.ciphertext, "base64")), d.final()]).toString("utf8");
}

export interface VaultDeps {
  db: Db;
  audit: Pick<AuditLog, "appendInTx">;
  clock: Clock;
  /** 32 bytes from BUTLER_MASTER_KEY; without it nothing can be stored or read. */
  masterKey: Buffer | undefined;
  /** Tells every instance, once a change commits, that the credentials changed. */
  changes: Pick<ChangeBus, "publish">;
  /** Told on this instance right after a change committed (before the notification arrives). */
  onChanged?: () => void;
}

/**
 * Provider credentials at rest in the database, encrypted under BUTLER_MASTER_KEY. Values go in
 * and come out only for the upstream call; listing shows names and dates, never values. Fails
 * closed: a value sealed under another key, or tampered with, is an error, never garbage.
 */
export function createVault(deps: VaultDeps) {
  const { db, audit, clock } = deps;
  const requireKey = (): Buffer => {
    if (!deps.masterKey)
      throw new AppError(
        "NOT_CONFIGURED",
        "set BUTLER_MASTER_KEY (32 bytes as 64 hex characters or base64, e.g. from openssl rand -hex 32) to store credentials",
      );
    return deps.masterKey;
  };
  const checkName = (name: string) => {
    if (!CREDENTIAL_NAME.test(name))
      throw new AppError(
        "INVALID_INPUT",
        "name: must be upper-case letters, digits and _ such as STRIPE_API_KEY",
      );
  };
  return {
    async set(name: string, value: string, actor: string): Promise<{ name: string; created: boolean }> {
      checkName(name);
      const key = requireKey();
      if (value.length === 0) throw new AppError("INVALID_INPUT", "value: is empty");
      if (value.length > MAX_VALUE)
        throw new AppError("INVALID_INPUT", `value: is longer than ${MAX_VALUE} characters`);
      if (value.includes("\u0000"))
        throw new AppError("INVALID_INPUT", "value: must not contain NUL characters");
      const now = clock.now();
      const sealed = seal(key, name, value);
      // The change and its audit line commit together.
      const done = await db.transaction(async (tx) => {
        const [row] = await tx
          .insert(credentials)
          .values({ name, ...sealed, createdAt: now, updatedAt: now, updatedBy: actor })
          .onConflictDoUpdate({
            target: credentials.name,
            set: { ...sealed, updatedAt: now, updatedBy: actor },
          })
          .returning({ createdAt: credentials.createdAt });
        const created = row!.createdAt.getTime() === now.getTime();
        await audit.appendInTx(tx, [
          {
            type: created ? "credential.created" : "credential.replaced",
            at: now,
            details: { name, actor, key_id: sealed.keyId },
          },
        ]);
        await deps.changes.publish(tx, { kind: "credentials" });
        return { name, created };
      });
      deps.onChanged?.();
      return done;
    },
    async list(): Promise<
      { name: string; key_id: string; created_at: string; updated_at: string; updated_by: string }[]
    > {
      const rows = await db.select().from(credentials).orderBy(asc(credentials.name));
      return rows.map((r) => ({
        name: r.name,
        key_id: r.keyId,
        created_at: r.createdAt.toISOString(),
        updated_at: r.updatedAt.toISOString(),
        updated_by: r.updatedBy,
      }));
    },
    async delete(name: string, actor: string): Promise<{ name: string }> {
      checkName(name);
      const done = await db.transaction(async (tx) => {
        const gone = await tx.delete(credentials).where(eq(credentials.name, name)).returning();
        if (gone.length === 0) throw new AppError("NOT_FOUND", `no stored credential ${name}`);
        await audit.appendInTx(tx, [
          { type: "credential.deleted", at: clock.now(), details: { name, actor } },
        ]);
        await deps.changes.publish(tx, { kind: "credentials" });
        return { name };
      });
      deps.onChanged?.();
      return done;
    },
    /** The value, for the upstream call only; undefined when none is stored. */
    async get(name: string): Promise<string | undefined> {
      const [row] = await db.select().from(credentials).where(eq(credentials.name, name));
      if (!row) return undefined;
      const key = deps.masterKey;
      if (!key || row.keyId !== keyIdOf(key))
        throw new AppError(
          "UNAVAILABLE",
          `credential ${name} is stored under master key ${row.keyId}, and BUTLER_MASTER_KEY ${key ? `is key ${keyIdOf(key)}` : "is not set"}`,
        );
      try {
        return open(key, name, row);
      } catch {
        throw new AppError(
          "UNAVAILABLE",
          `credential ${name} does not decrypt: it was altered in the database`,
        );
      }
    },
  };
}

export type Vault = ReturnType<typeof createVault>;
