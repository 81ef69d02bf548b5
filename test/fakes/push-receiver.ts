import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Observed } from "./observed.js";

export interface ReceivedPush {
  headers: IncomingHttpHeaders;
  /** The StreamResponse JSON: {task} | {statusUpdate} | {artifactUpdate}. */
  body: Record<string, any>;
}

/**
 * An agent's push-notification endpoint on loopback. It insists on what A2A pushes must carry
 * (POST, Content-Type application/a2a+json, a JSON StreamResponse body) and can be told to fail
 * the next few deliveries, like a receiver that is briefly down.
 */
export class PushReceiver extends Observed {
  readonly received: ReceivedPush[] = [];
  readonly refused: string[] = [];
  /** Answer the next N pushes with this status instead of 200. */
  failNext: { count: number; status: number } = { count: 0, status: 503 };
  #server: Server | undefined;
  url = "";
  port = 0;

  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      let raw = "";
      req.setEncoding("utf8");
      req.on("data", (c) => {
        raw += c;
      });
      req.on("end", () => {
        res.on("finish", () => this.changed());
        if (req.method !== "POST" || req.headers["content-type"] !== "application/a2a+json") {
          this.refused.push(`${req.method} ${req.headers["content-type"]}`);
          res.writeHead(415).end();
          return;
        }
        if (this.failNext.count > 0) {
          this.failNext.count--;
          res.writeHead(this.failNext.status).end();
          return;
        }
        let body: Record<string, any>;
        try {
          body = JSON.parse(raw);
        } catch {
          this.refused.push("not JSON");
          res.writeHead(400).end();
          return;
        }
        this.received.push({ headers: req.headers, body });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => this.#server!.listen(0, "127.0.0.1", r));
    this.port = (this.#server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}/a2a/push`;
    return this;
  }

  /** The pushes about one task, as `kind:state` strings (for example `statusUpdate:TASK_STATE_COMPLETED`). */
  story(taskId: string): string[] {
    return this.received
      .map((p) => p.body)
      .filter((b) => (b.task?.id ?? b.statusUpdate?.taskId ?? b.artifactUpdate?.taskId) === taskId)
      .map((b) =>
        b.task
          ? `task:${b.task.status.state}`
          : b.statusUpdate
            ? `statusUpdate:${b.statusUpdate.status.state}`
            : `artifactUpdate:${b.artifactUpdate.artifact.parts[0].data.state}`,
      );
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
  }
}
