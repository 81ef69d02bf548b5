import { connect } from "node:net";

export interface RawResponse {
  status: number;
  head: string;
  /** Every byte after the blank line that ends the head. */
  body: Buffer;
}

/**
 * Sends `request` as it is over a fresh TCP connection and reads until the server closes it
 * (send `Connection: close`). For what fetch hides: bytes after a HEAD answer's head, answers to
 * requests no client library would send.
 */
export function rawRequest(url: string, request: string | Buffer): Promise<RawResponse> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (d) => chunks.push(d));
    socket.on("error", reject);
    socket.on("close", () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      if (end < 0) return reject(new Error(`no complete answer: ${JSON.stringify(all.toString())}`));
      const head = all.subarray(0, end).toString("latin1");
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), head, body: all.subarray(end + 4) });
    });
    socket.write(request);
  });
}
