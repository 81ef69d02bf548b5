import { randomFillSync } from "node:crypto";

// Random bytes are drawn from a pool refilled 4 KiB at a time: one system call per ~400 ids
// instead of one per id, which matters on the decision path (every decision gets an event id).
const pool = Buffer.alloc(4096);
let offset = pool.length;

function take(bytes: number): number {
  if (offset + bytes > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const v = pool.readUIntLE(offset, bytes);
  offset += bytes;
  return v;
}

/**
 * A prefixed random id such as `evt_k3j9x0q2m4p8r1t6`: 16 base-36 characters carrying 79 random
 * bits, short enough to fit Telegram's 64-byte callback data together with a verb.
 */
export function newId(prefix: string): string {
  // 48 bits fit in 10 base-36 digits, 31 bits in 6 (36^6 > 2^31).
  const hi = take(6).toString(36).padStart(10, "0");
  const lo = (take(4) >>> 1).toString(36).padStart(6, "0");
  return `${prefix}_${hi}${lo}`;
}
