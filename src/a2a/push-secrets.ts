import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "../db/client.js";
import { a2aPushConfigs } from "../db/schema.js";
import { AppError } from "../errors.js";
import { keyIdOf, open, seal } from "../providers/vault.js";

/**
 * Push-config tokens and authentication credentials at rest: sealed like vault entries (AES-256-GCM,
 * random IV) and stored in their text columns as `v1:<key id>:<iv>:<ciphertext>:<tag>` (base64
 * parts). The row id and the field are authenticated data, so a sealed value cannot be moved to
 * another config or field. Values written before sealing existed are plaintext: they are still
 * read, and resealed at start-up when a key is available.
 */
const SEALED = /^v1:([0-9a-f]{8}):([A-Za-z0-9+/]{16}):([A-Za-z0-9+/]*={0,2}):([A-Za-z0-9+/]{22}==)$/;

export type PushField = "token" | "credentials";

export interface PushSealer {
  /** Whether new values can be sealed (a key is configured). */
  readonly canSeal: boolean;
  /** The stored form of a value; empty values stay empty. Throws when no key is configured. */
  seal(configId: string, field: PushField, value: string): string;
  /** The value of a stored form (plaintext rows are returned as they are). */
  open(configId: string, field: PushField, stored: string): string;
  /** Whether a stored form is sealed under the key new values are sealed with. */
  isCurrent(stored: string): boolean;
}

/**
 * A sealer over `keys`: the first seals, every one opens (a key replaced by BUTLER_MASTER_KEY stays
 * readable until its rows are resealed). No key: nothing can be sealed, and sealed values are an
 * error naming the key they need.
 */
export function createPushSealer(keys: readonly (Buffer | undefined)[]): PushSealer {
  const usable = keys.filter((k): k is Buffer => k !== undefined);
  const byId = new Map(usable.map((k) => [keyIdOf(k), k]));
  const current = usable[0];
  const aad = (configId: string, field: PushField) => `a2a_push_configs:${configId}:${field}`;
  return {
    canSeal: current !== undefined,
    seal(configId, field, value) {
      if (value === "") return "";
      if (!current)
        throw new AppError(
          "NOT_CONFIGURED",
          "push notification tokens and credentials are stored encrypted: set BUTLER_MASTER_KEY on the server",
        );
      const s = seal(current, aad(configId, field), value);
      return `v1:${s.keyId}:${s.iv}:${s.ciphertext}:${s.tag}`;
    },
    open(configId, field, stored) {
      const m = SEALED.exec(stored);
      if (!m) return stored;
      const key = byId.get(m[1]!);
      if (!key)
        throw new AppError(
          "UNAVAILABLE",
          `push notification config ${configId}: its ${field} is sealed under key ${m[1]}, which this server does not have (BUTLER_MASTER_KEY ${current ? `is key ${keyIdOf(current)}` : "is not set"})`,
        );
      try {
        return open(key, aad(configId, field), { iv: m[2]!, ciphertext: m[3]!, tag: m[4]! });
      } catch {
        throw new AppError(
          "UNAVAILABLE",
          `push notification config ${configId}: its ${field} does not decrypt: it was altered in the database`,
        );
      }
    },
    isCurrent(stored) {
      const m = SEALED.exec(stored);
      return m !== null && current !== undefined && m[1] === keyIdOf(current);
    },
  };
}

/**
 * Seals, under the current key, every stored token and credential that is plaintext or sealed
 * under an older key this server still has. Each row is updated only if it did not change since it
 * was read, so instances starting together do not undo each other. Returns how many configs it
 * sealed, how many are left in plaintext (no key) and how many cannot be opened (missing key).
 */
export async function resealPushConfigs(
  db: Db,
  sealer: PushSealer,
): Promise<{ resealed: number; plaintext: number; unreadable: number }> {
  const rows = await db
    .select({
      id: a2aPushConfigs.id,
      token: a2aPushConfigs.token,
      authCredentials: a2aPushConfigs.authCredentials,
    })
    .from(a2aPushConfigs);
  let resealed = 0;
  let plaintext = 0;
  let unreadable = 0;
  for (const r of rows) {
    const stale = (v: string | null) => v !== null && v !== "" && !sealer.isCurrent(v);
    if (!stale(r.token) && !stale(r.authCredentials)) continue;
    if (!sealer.canSeal) {
      if ([r.token, r.authCredentials].some((v) => stale(v) && !SEALED.test(v!))) plaintext++;
      else unreadable++;
      continue;
    }
    let token: string;
    let credentials: string | null;
    try {
      token = sealer.seal(r.id, "token", sealer.open(r.id, "token", r.token));
      credentials =
        r.authCredentials === null
          ? null
          : sealer.seal(r.id, "credentials", sealer.open(r.id, "credentials", r.authCredentials));
    } catch {
      unreadable++;
      continue;
    }
    const updated = await db
      .update(a2aPushConfigs)
      .set({ token, authCredentials: credentials })
      .where(
        and(
          eq(a2aPushConfigs.id, r.id),
          eq(a2aPushConfigs.token, r.token),
          r.authCredentials === null
            ? isNull(a2aPushConfigs.authCredentials)
            : eq(a2aPushConfigs.authCredentials, r.authCredentials),
        ),
      )
      .returning({ id: a2aPushConfigs.id });
    resealed += updated.length;
  }
  return { resealed, plaintext, unreadable };
}
