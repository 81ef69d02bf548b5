import type { Clock } from "../../src/clock.js";

/** A clock that only moves when told to. */
export class FakeClock implements Clock {
  #ms: number;
  constructor(start: string | number = "2026-05-01T17:42:11Z") {
    this.#ms = typeof start === "number" ? start : Date.parse(start);
  }
  now(): Date {
    return new Date(this.#ms);
  }
  advance(ms: number): void {
    this.#ms += ms;
  }
  set(iso: string): void {
    this.#ms = Date.parse(iso);
  }
}
