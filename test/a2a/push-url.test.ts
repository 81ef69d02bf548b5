import { describe, expect, test } from "vitest";
import { PushRefused, type Resolve, sendPush } from "../../src/a2a/push-sender.js";
import { checkPushUrl, isInternalAddress } from "../../src/a2a/push-url.js";
import { PushReceiver } from "../fakes/push-receiver.js";

describe("push notification URLs", () => {
  test.each([
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fd00::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:a9fe:a9fe",
    "::7f00:1",
    "::ffff:0:7f00:1",
    "64:ff9b:1::a00:5",
    "2002:7f00:1::1",
    "64:ff9b::169.254.169.254",
    "[::1]",
    "not-an-ip",
  ])("%s is internal", (ip) => {
    expect(isInternalAddress(ip)).toBe(true);
  });

  test.each(["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"])(
    "%s is public",
    (ip) => {
      expect(isInternalAddress(ip)).toBe(false);
    },
  );

  test("only https, and never an internal address, unless the host is allowlisted", () => {
    const refused = (u: string, allow: string[] = []) => {
      const r = checkPushUrl(u, allow);
      return r.ok ? undefined : r.error;
    };
    expect(refused("https://agent.example.com/hook")).toBeUndefined();
    expect(refused("https://[2606:4700::1111]/hook")).toBeUndefined();
    expect(refused("https://8.8.8.8/hook")).toBeUndefined();
    expect(refused("http://agent.example.com/hook")).toMatch(/must be https/);
    expect(refused("https://169.254.169.254/")).toMatch(/internal address/);
    expect(refused("https://[::ffff:169.254.169.254]/")).toMatch(/internal address/);
    expect(refused("https://2130706433/")).toMatch(/internal address/); // 127.0.0.1 written as a number
    expect(refused("https://0x7f.1/")).toMatch(/internal address/);
    expect(refused("https://localhost/")).toMatch(/local host/);
    expect(refused("https://printer/")).toMatch(/local host/);
    expect(refused("https://user:pw@agent.example.com/")).toMatch(/user name or password/);
    expect(refused("file:///etc/passwd")).toMatch(/https/);
    expect(refused("not a url")).toMatch(/not a URL/);
    // The allowlist names a host, or a host and port.
    expect(refused("http://127.0.0.1:9000/hook", ["127.0.0.1:9000"])).toBeUndefined();
    expect(refused("http://127.0.0.1:9001/hook", ["127.0.0.1:9000"])).toMatch(/must be https/);
    expect(refused("https://127.0.0.1/hook", ["127.0.0.1"])).toBeUndefined();
    expect(refused("http://hooks.internal/x", ["HOOKS.internal"])).toBeUndefined();
  });

  test("a push to a host name that resolves to an internal address is refused at connect time", async () => {
    const receiver = await new PushReceiver().start();
    try {
      expect(checkPushUrl(`https://localhost.:${receiver.port}/`, []).ok).toBe(false);
      // A name that passes the URL check but resolves to loopback (DNS rebinding) is refused when
      // connecting: the address checked is the one connected to.
      const rebound: Resolve = (_host, cb) => cb(null, [{ address: "127.0.0.1", family: 4 }]);
      const target = {
        url: `https://hooks.example.com:${receiver.port}/`,
        token: "",
        authScheme: null,
        authCredentials: null,
      };
      expect(checkPushUrl(target.url, []).ok).toBe(true);
      await expect(sendPush(target, { task: {} }, [], { resolve: rebound })).rejects.toThrow(PushRefused);
      await expect(sendPush(target, { task: {} }, [], { resolve: rebound })).rejects.toThrow(
        /internal address \(127\.0\.0\.1\)/,
      );
      expect(receiver.received).toHaveLength(0);
      // Allowlisted, the same receiver is reached over plain http.
      const ok = { url: receiver.url, token: "t", authScheme: "Bearer", authCredentials: "c" };
      expect(await sendPush(ok, { task: { id: "x" } }, [`127.0.0.1:${receiver.port}`])).toBe(200);
      expect(receiver.received[0]!.headers.authorization).toBe("Bearer c");
    } finally {
      await receiver.stop();
    }
  });
});

describe("push delivery deadlines", () => {
  test("a receiver that never answers is cut off at the deadline; one that trickles its body is not waited for", async () => {
    const { createServer } = await import("node:http");
    const sockets = new Set<import("node:net").Socket>();
    const server = createServer((req, res) => {
      if (req.url === "/silent") return; // never answers
      res.writeHead(200, { "content-type": "text/plain" });
      const t = setInterval(() => res.write("."), 50); // a body that never ends
      res.on("close", () => clearInterval(t));
    });
    server.on("connection", (s) => sockets.add(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as import("node:net").AddressInfo).port;
    const allow = [`127.0.0.1:${port}`];
    const target = (path: string) => ({
      url: `http://127.0.0.1:${port}${path}`,
      token: "",
      authScheme: null,
      authCredentials: null,
    });
    try {
      await expect(sendPush(target("/silent"), { task: {} }, allow, { timeoutMs: 300 })).rejects.toThrow(
        /did not answer within 300 ms/,
      );
      // Settles on the status line (a body that never ends would otherwise hold it forever).
      expect(await sendPush(target("/drip"), { task: {} }, allow, { timeoutMs: 300 })).toBe(200);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
