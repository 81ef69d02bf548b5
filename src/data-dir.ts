import { randomBytes } from "node:crypto";
import { watch } from "node:fs";
import { chmod, link, lstat, mkdir, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { AppError } from "./errors.js";

/**
 * Files Butler keeps in its data directory (BUTLER_DATA_DIR), all owner-only:
 * - `admin-token`: the admin API token the CLI uses to talk to a running server;
 * - `server.json`: where the running server listens (written after listen, removed at exit);
 * - `butler.lock`: held by the process that has the embedded database open;
 * - `server.starting`: names a `butler serve` that is loading and will take the lock (removed once
 *   it listens), so that CLI commands wait for it rather than open the database themselves;
 * - `push-key`: seals A2A push-config tokens and credentials when BUTLER_MASTER_KEY is not set
 *   (embedded database only);
 * - `pglite/`: the embedded database.
 * Directories are 0700 and files 0600; `tightenDataDir` takes group and other bits off anything
 * else found there (PGlite creates its files 0666 whatever the umask).
 */
export interface ServerInfo {
  pid: number;
  url: string;
  /** The server's random instance id, also answered by its /healthz. */
  instance: string;
  startedAt: string;
}

export async function ensureDataDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

/** What Butler keeps in its data directory (anything else there is not its business). */
const OWN_ENTRIES = ["admin-token", "server.json", "server.starting", "butler.lock", "push-key", "pglite"];

/**
 * Takes the group and other permission bits off the data directory and off Butler's files in it,
 * the embedded database's whole tree included (symbolic links are left alone, never followed).
 * Returns the paths it changed, relative to `dir` ("." for the directory itself).
 */
export async function tightenDataDir(dir: string): Promise<string[]> {
  const changed: string[] = [];
  const visit = async (path: string, recurse: boolean): Promise<void> => {
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(path);
    } catch (e) {
      // Removed meanwhile (PGlite's temporary files come and go).
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
      throw e;
    }
    if (st.isSymbolicLink()) return;
    if ((st.mode & 0o077) !== 0) {
      await chmod(path, st.mode & 0o700);
      changed.push(relative(dir, path) || ".");
    }
    if (recurse && st.isDirectory())
      for (const entry of await readdir(path)) await visit(join(path, entry), true);
  };
  await visit(dir, false);
  for (const entry of OWN_ENTRIES) await visit(join(dir, entry), true);
  return changed;
}

/**
 * Writes an owner-only file (0600) whole: written aside (created 0600, and chmod-ed in case the
 * umask took bits away), then moved into place, so a reader never sees it half-written and an
 * existing file's looser mode goes with it. `exclusive`: fails with EEXIST if the file exists.
 */
async function writePrivate(file: string, text: string, exclusive = false): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const fh = await open(temp, "wx", 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(text);
  } finally {
    await fh.close();
  }
  try {
    if (exclusive) await link(temp, file);
    else await rename(temp, file);
  } finally {
    await rm(temp, { force: true });
  }
}

/**
 * The key that seals push-config tokens and credentials when BUTLER_MASTER_KEY is not set (the
 * embedded database's data directory; `create`: made, 32 random bytes, the first time).
 */
export async function readPushKey(dir: string, create: boolean): Promise<Buffer | undefined> {
  const file = join(dir, "push-key");
  let hex: string;
  try {
    hex = (await readFile(file, "utf8")).trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    if (!create) return undefined;
    const key = randomBytes(32);
    await writePrivate(file, `${key.toString("hex")}\n`, true);
    return key;
  }
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new AppError(
      "INVALID_INPUT",
      `${file} is not a key (64 hex characters): restore it from a backup, or remove it to lose the push notification credentials it sealed`,
    );
  return Buffer.from(hex, "hex");
}

/** Reads the admin token, creating a random one (mode 0600) the first time. */
export async function readOrCreateAdminToken(dir: string): Promise<string> {
  const file = join(dir, "admin-token");
  try {
    const t = (await readFile(file, "utf8")).trim();
    if (t.length >= 32) return t;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const token = `bta_${randomBytes(32).toString("base64url")}`;
  await writePrivate(file, `${token}\n`);
  return token;
}

export async function readAdminToken(dir: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dir, "admin-token"), "utf8")).trim();
  } catch {
    return undefined;
  }
}

export async function writeServerInfo(dir: string, info: ServerInfo): Promise<void> {
  await writePrivate(join(dir, "server.json"), `${JSON.stringify(info)}\n`);
}

export async function removeServerInfo(dir: string, pid = process.pid): Promise<void> {
  const info = await readServerInfo(dir);
  if (info && info.pid === pid) await rm(join(dir, "server.json"), { force: true });
}

/** The server recorded in the data directory, if its process is still alive. */
export async function readServerInfo(dir: string): Promise<ServerInfo | undefined> {
  let info: Partial<Record<keyof ServerInfo, unknown>>;
  try {
    info = JSON.parse(await readFile(join(dir, "server.json"), "utf8"));
  } catch {
    return undefined;
  }
  // Only a file as butler serve writes it names a server (an http URL, an instance id).
  const wellFormed =
    typeof info?.url === "string" &&
    /^https?:\/\//.test(info.url) &&
    typeof info.instance === "string" &&
    typeof info.startedAt === "string";
  return wellFormed && isAlive(info.pid) ? (info as ServerInfo) : undefined;
}

/**
 * Says that this process is a `butler serve` on its way up (written before it loads the server, so
 * before it takes the lock). Returns the function that removes the mark (once it listens, or fails).
 */
export async function markServerStarting(dir: string): Promise<() => Promise<void>> {
  await ensureDataDir(dir);
  const file = join(dir, "server.starting");
  await writePrivate(file, `${JSON.stringify({ pid: process.pid })}\n`);
  return async () => {
    if ((await readPid(file)) === process.pid) await rm(file, { force: true });
  };
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const pid = (JSON.parse(await readFile(file, "utf8")) as { pid?: unknown }).pid;
    return Number.isSafeInteger(pid) ? (pid as number) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The process id of a `butler serve` starting in `dir`: alive, and holding the embedded database's
 * lock or marked as starting, while server.json is not written yet (undefined when there is none).
 */
export async function startingServerPid(dir: string): Promise<number | undefined> {
  const holder = await readLockHolder(dir);
  if (holder) return holder.purpose === "butler serve" ? holder.pid : undefined;
  const marked = await readPid(join(dir, "server.starting"));
  return marked !== undefined && isAlive(marked) ? marked : undefined;
}

/**
 * Waits for the server starting in `dir` (process `pid`) to write server.json. Resolves to its
 * info; to `gone` if that process ends, or stops being a starting server, first; to `timedOut`
 * when `timeoutMs` passes. Watches the directory, and looks again every 250 ms in case a change
 * goes unnoticed (some file systems do not report them).
 */
export async function waitForServerInfo(
  dir: string,
  pid: number,
  timeoutMs: number,
): Promise<{ info: ServerInfo } | { gone: true } | { timedOut: true }> {
  return new Promise((resolveWait) => {
    let done = false;
    let checking = false;
    let again = false;
    const finish = (r: { info: ServerInfo } | { gone: true } | { timedOut: true }) => {
      if (done) return;
      done = true;
      watcher?.close();
      clearInterval(interval);
      clearTimeout(timer);
      resolveWait(r);
    };
    const check = async (): Promise<void> => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      try {
        do {
          again = false;
          const info = await readServerInfo(dir);
          if (info) return finish({ info });
          if ((await startingServerPid(dir)) !== pid) return finish({ gone: true });
        } while (again && !done);
      } finally {
        checking = false;
      }
    };
    let watcher: ReturnType<typeof watch> | undefined;
    try {
      watcher = watch(dir, () => void check());
      watcher.on("error", () => {});
    } catch {
      watcher = undefined;
    }
    const interval = setInterval(() => void check(), 250);
    const timer = setTimeout(() => finish({ timedOut: true }), timeoutMs);
    void check();
  });
}

/** The live process holding the embedded database's lock, if any (and if the lock can be read). */
export async function readLockHolder(dir: string): Promise<{ pid: number; purpose: string } | undefined> {
  try {
    const holder = JSON.parse(await readFile(join(dir, "butler.lock"), "utf8")) as {
      pid?: unknown;
      purpose?: unknown;
    };
    if (!isAlive(holder.pid)) return undefined;
    return { pid: holder.pid, purpose: String(holder.purpose) };
  } catch {
    return undefined;
  }
}

/** Whether `pid` names a live process. Only a positive integer names one: `kill(0 | -1, 0)` signals groups. */
function isAlive(pid: unknown): pid is number {
  if (!Number.isSafeInteger(pid) || (pid as number) <= 0) return false;
  try {
    process.kill(pid as number, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the embedded database's lock (PGlite must be opened by one process only). The lock file
 * appears atomically with its content (written aside, then hard-linked into place), so another
 * process never reads a half-written lock. A lock left by a dead process is taken over; a lock that
 * cannot be read is respected. Returns a function that releases it, if it is still ours.
 */
export async function acquireDataDirLock(dir: string, purpose: string): Promise<() => Promise<void>> {
  const file = join(dir, "butler.lock");
  const mine = JSON.stringify({ pid: process.pid, purpose, nonce: randomBytes(8).toString("hex") });
  const temp = join(dir, `.butler.lock.${process.pid}.${randomBytes(4).toString("hex")}`);
  await writeFile(temp, mine, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(temp, file);
        return async () => {
          // Remove the lock only if it is still the one this process took.
          if ((await readFile(file, "utf8").catch(() => "")) === mine) await rm(file, { force: true });
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const text = await readFile(file, "utf8").catch(() => undefined);
      let holder: { pid: number; purpose: string } | undefined;
      try {
        holder = text === undefined ? undefined : JSON.parse(text);
      } catch {
        holder = undefined;
      }
      if (holder && !isAlive(holder.pid)) {
        // Stale: remove it only if it has not changed since we read it, then try again.
        if ((await readFile(file, "utf8").catch(() => undefined)) === text) await rm(file, { force: true });
        continue;
      }
      throw new AppError(
        "IN_USE",
        holder
          ? `the embedded database in ${dir} is in use by process ${holder.pid} (${holder.purpose}); stop it, or run CLI commands while the server runs (they go through it)`
          : `the embedded database in ${dir} is locked (${file} exists but cannot be read); remove it if no Butler process is running`,
      );
    }
    throw new AppError("UNAVAILABLE", `could not take the lock ${file}; try again`);
  } finally {
    await rm(temp, { force: true });
  }
}
