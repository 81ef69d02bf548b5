import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A loopback TCP proxy a test controls, to put a network fault between the server and something
 * it depends on (PostgreSQL, a chat platform's API) without root:
 * - `open()`: bytes flow both ways;
 * - `refuse()`: every connection is cut and new ones are refused (the port stops listening), as
 *   when the database host is down;
 * - `blackhole()`: connections stay open and new ones are accepted, but no byte gets through in
 *   either direction, as in a silent network partition.
 */
export class TcpProxy {
  #server: Server | undefined;
  #pairs = new Set<{ client: Socket; upstream: Socket | undefined }>();
  #pending: (() => void)[] = [];
  #mode: "open" | "refused" | "blackhole" = "open";
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** Listens on a free loopback port (or `port`, to come back on the same one). */
  async start(port = this.port): Promise<this> {
    const server = createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.#server = server;
    const a = server.address();
    this.port = typeof a === "object" && a ? a.port : port;
    return this;
  }

  get mode() {
    return this.#mode;
  }

  /** How many client connections are open through the proxy. */
  get connections(): number {
    return this.#pairs.size;
  }

  #accept(client: Socket): void {
    const pair = { client, upstream: undefined as Socket | undefined };
    this.#pairs.add(pair);
    const drop = () => {
      this.#pairs.delete(pair);
      client.destroy();
      pair.upstream?.destroy();
    };
    client.on("error", drop);
    client.on("close", drop);
    client.pause();
    const link = () => {
      const upstream = connect(this.targetPort, this.targetHost);
      pair.upstream = upstream;
      upstream.on("error", drop);
      upstream.on("close", drop);
      client.on("data", (d) => upstream.write(d));
      upstream.on("data", (d) => client.write(d));
      client.resume();
    };
    if (this.#mode === "open") link();
    else this.#pending.push(link);
  }

  /** Lets bytes flow again (and listens again after `refuse`); what waited in a partition arrives now. */
  async open(): Promise<void> {
    const was = this.#mode;
    this.#mode = "open";
    if (was === "refused") await this.start(this.port);
    if (was === "blackhole") {
      for (const p of this.#pairs) {
        p.client.resume();
        p.upstream?.resume();
      }
      for (const link of this.#pending.splice(0)) link();
    }
  }

  /** Cuts every connection and stops listening: connects fail at once (ECONNREFUSED). */
  async refuse(): Promise<void> {
    this.#mode = "refused";
    const server = this.#server;
    this.#server = undefined;
    const closed = new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    for (const p of this.#pairs) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    this.#pairs.clear();
    this.#pending = [];
    await closed;
  }

  /**
   * From now on nothing gets through, in either direction, on old or new connections: bytes wait
   * unread (as TCP keeps retransmitting in a partition) and flow again on `open()`.
   */
  blackhole(): void {
    this.#mode = "blackhole";
    for (const p of this.#pairs) {
      p.client.pause();
      p.upstream?.pause();
    }
  }

  async stop(): Promise<void> {
    await this.refuse();
  }
}
