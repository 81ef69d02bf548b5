import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { AppError } from "../errors.js";
import type { PolicySource } from "../policy/index.js";

/** A policy file as read from disk: its display name, absolute path and text (or why it could not be read). */
export interface PolicyFile extends PolicySource {
  path: string;
}

/** How a file is named in messages: relative to the working directory when it is inside it. */
export function displayPath(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return (rel.startsWith("..") || rel === "" ? abs : rel).split(sep).join("/");
}

/**
 * Reads one policy file, or every `*.yaml`/`*.yml` file of a directory (not hidden ones), in name
 * order. A file that cannot be read (a directory named `x.yaml`, a dangling link, no permission),
 * or that changes while it is read, is returned with `unreadable` set instead of failing the rest.
 */
export async function readPolicyFiles(target: string): Promise<PolicyFile[]> {
  const abs = resolve(target);
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AppError(
      "INVALID_INPUT",
      code === "ENOENT" ? `${target}: no such file or directory` : `${target}: cannot be read (${code})`,
    );
  }
  if (!st.isDirectory()) return [await readOne(abs)];
  let names: string[];
  try {
    names = await readdir(abs);
  } catch (e) {
    throw new AppError(
      "INVALID_INPUT",
      `cannot read the policies directory ${target}: ${(e as NodeJS.ErrnoException).code ?? e}`,
    );
  }
  const files = names.filter((n) => /\.ya?ml$/i.test(n) && !n.startsWith(".")).sort();
  return Promise.all(files.map((n) => readOne(join(abs, n))));
}

async function readOne(path: string): Promise<PolicyFile> {
  const file = displayPath(path);
  try {
    const before = await stat(path);
    if (!before.isFile()) return { file, path, text: "", unreadable: "is not a regular file" };
    const text = await readFile(path, "utf8");
    const after = await stat(path);
    // An editor may be half-way through writing it: a truncated file can still be valid YAML.
    if (
      after.size !== before.size ||
      after.mtimeMs !== before.mtimeMs ||
      Buffer.byteLength(text) !== after.size
    ) {
      return {
        file,
        path,
        text: "",
        unreadable: "changed while it was being read; it will be read again on the next change or reload",
      };
    }
    return { file, path, text };
  } catch (e) {
    return {
      file,
      path,
      text: "",
      unreadable: `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    };
  }
}
