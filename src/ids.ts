import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

/**
 * A prefixed random id such as `evt_k3j9x0q2m4p8r1t6`: 16 base-36 characters (~82 bits), short
 * enough to fit Telegram's 64-byte callback data together with a verb.
 */
export function newId(prefix: string, length = 16): string {
  let out = `${prefix}_`;
  let n = 0;
  while (n < length) {
    for (const b of randomBytes(length * 2)) {
      // 252 = 7 * 36: rejecting the top bytes keeps every character equally likely.
      if (b >= 252) continue;
      out += ALPHABET[b % 36];
      if (++n === length) break;
    }
  }
  return out;
}
