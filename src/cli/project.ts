import { lstatSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

/** Where a command's data directory, policies and providers are, and why there. */
export interface ProjectDirs {
  /** The environment the command runs with: the project's directories filled in where unset. */
  env: Record<string, string | undefined>;
  /** Why the data directory is the one it is, for messages: "BUTLER_DATA_DIR", "the project in /x", ... */
  dataDirFrom: string;
  /** Said on stderr when the project is not the current directory (set only then). */
  note?: string;
}

/**
 * A directory of this user's own that other users cannot write to, not reached through a symbolic
 * link: only such a `.butler` or `policies` marks a project. Another local user who can create
 * `/tmp/.butler` or `/tmp/policies` must not become the project of commands run below `/tmp`
 * (they would receive the admin token, credentials and approvals).
 */
function ownDir(path: string): boolean {
  try {
    const s = lstatSync(path);
    const uid = process.getuid?.();
    return s.isDirectory() && (uid === undefined || s.uid === uid) && (s.mode & 0o002) === 0;
  } catch {
    return false;
  }
}

/** The nearest directory, from `cwd` upwards, that holds a `.butler` data directory or a `policies` directory of this user's. */
function findProjectRoot(cwd: string): string | undefined {
  let dir = resolve(cwd);
  for (;;) {
    if (ownDir(join(dir, ".butler")) || ownDir(join(dir, "policies"))) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/**
 * The project a command works on, from any working directory: unless BUTLER_DATA_DIR,
 * POLICIES_DIR and PROVIDERS_DIR are set, they default to `.butler`, `policies` and `providers` of
 * the nearest directory (the working one or above) that holds `.butler` or `policies`, as they
 * would if the command were run there. A command run in a subdirectory of the project, or in
 * `policies/` itself, finds the project's database rather than making an empty one.
 */
export function projectDirs(env: Record<string, string | undefined>, cwd: string): ProjectDirs {
  const set = (value: string | undefined) => (value ?? "").trim() !== "";
  if (set(env.BUTLER_DATA_DIR) && set(env.POLICIES_DIR) && set(env.PROVIDERS_DIR))
    return { env, dataDirFrom: "BUTLER_DATA_DIR" };
  const root = findProjectRoot(cwd);
  const base = root ?? resolve(cwd);
  const defaults = {
    BUTLER_DATA_DIR: join(base, ".butler"),
    POLICIES_DIR: join(base, "policies"),
    PROVIDERS_DIR: join(base, "providers"),
  };
  const given: Record<keyof typeof defaults, string | undefined> = {
    BUTLER_DATA_DIR: env.BUTLER_DATA_DIR,
    POLICIES_DIR: env.POLICIES_DIR,
    PROVIDERS_DIR: env.PROVIDERS_DIR,
  };
  const filled = { ...env };
  const used: string[] = [];
  for (const [name, dir] of Object.entries(defaults) as [keyof typeof defaults, string][])
    if (!set(given[name])) {
      filled[name] = dir;
      used.push(`${name}=${dir}`);
    }
  if (!root)
    return {
      env: filled,
      dataDirFrom: set(env.BUTLER_DATA_DIR)
        ? "BUTLER_DATA_DIR"
        : `the default, as no directory from ${base} upwards holds .butler or policies`,
    };
  const here = root === resolve(cwd);
  return {
    env: filled,
    dataDirFrom: set(env.BUTLER_DATA_DIR)
      ? "BUTLER_DATA_DIR"
      : here
        ? "the current directory"
        : `the project in ${root}`,
    ...(here || used.length === 0
      ? {}
      : { note: `using the project in ${root} (${used.join(", ")}); set them to use another` }),
  };
}
