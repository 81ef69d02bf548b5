import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { describe, expect, onTestFinished, test } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));

describe("npm run stand-in:chat", () => {
  test("starts a fake Slack and a fake Telegram, prints how to point Butler at them, and each call", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "examples/stand-in-chat.ts"], {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    });
    onTestFinished(async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    });
    let out = "";
    const waiting = new Set<() => void>();
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (c: string) => {
      out += c;
      for (const w of [...waiting]) w();
    });
    /** Resolves once the output holds `text`. */
    const until = (text: string) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!out.includes(text)) return;
          waiting.delete(check);
          resolve();
        };
        waiting.add(check);
        child.once("exit", (code) => reject(new Error(`exited with ${code} before "${text}": ${out}`)));
        check();
      });
    await until("npm start\n");
    const slack = /SLACK_API_URL=(\S+) SLACK_BOT_TOKEN=(\S+) /.exec(out);
    const telegram = /TELEGRAM_API_ROOT=(\S+) TELEGRAM_BOT_TOKEN=(\S+) TELEGRAM_MODE=polling npm start/.exec(
      out,
    );
    expect(slack, out).not.toBeNull();
    expect(telegram, out).not.toBeNull();

    // What Butler does first on each platform, as Bolt and grammY send it.
    const auth = await fetch(`${slack![1]}/auth.test`, {
      method: "POST",
      headers: { authorization: `Bearer ${slack![2]}` },
    });
    expect(await auth.json()).toMatchObject({ ok: true });
    const me = await fetch(`${telegram![1]}/bot${telegram![2]}/getMe`, { method: "POST" });
    expect(await me.json()).toMatchObject({ ok: true });
    await until("slack: auth.test\n");
    await until("telegram: getMe\n");
  });
});
