import type { ChangeBus } from "../db/changes.js";
import type { Secrets } from "../secrets.js";
import type { Vault } from "./vault.js";

export interface CredentialDeps {
  /** The credential from the environment (NAME, or the file NAME_FILE names), read at each call. */
  fromEnv: ((name: string) => string | undefined) | undefined;
  vault: Pick<Vault, "get">;
  /** Every value read becomes a secret the logs, the outbox and the audit log never show. */
  secrets: Pick<Secrets, "add">;
  /** Credential changes (this instance's and others'), and resyncs after a lost notification. */
  changes: Pick<ChangeBus, "subscribe">;
}

/**
 * A provider's credential for the upstream call: the environment first (a deployment's secret
 * store), then the encrypted vault. What the vault holds is read and decrypted once per name and
 * kept (a database round trip and a decryption per call otherwise) until a credential is set or
 * deleted (the vault says so on every instance through the change bus, and on this one at once)
 * or notifications may have been missed; a failed read is not kept.
 */
export function createCredentials(deps: CredentialDeps) {
  const stored = new Map<string, Promise<string | undefined>>();
  /** The value each name was last registered as a secret with: registering again is skipped. */
  const registered = new Map<string, string>();
  const invalidate = () => stored.clear();
  deps.changes.subscribe((c) => {
    if (c.kind === "credentials" || c.kind === "resync") invalidate();
  });
  const fromVault = (name: string): Promise<string | undefined> => {
    let value = stored.get(name);
    if (!value) {
      const read = deps.vault.get(name);
      value = read;
      // Kept from the start, so that a change arriving while it is read drops it too.
      stored.set(name, read);
      read.catch(() => {
        if (stored.get(name) === read) stored.delete(name);
      });
    }
    return value;
  };
  return {
    async get(name: string): Promise<string | undefined> {
      const value = deps.fromEnv?.(name) ?? (await fromVault(name));
      if (value !== undefined && registered.get(name) !== value) {
        deps.secrets.add(name, value);
        registered.set(name, value);
      }
      return value;
    },
    /** Drops what the vault gave (called by this instance's vault right after a change commits). */
    invalidate,
  };
}

export type Credentials = ReturnType<typeof createCredentials>;
