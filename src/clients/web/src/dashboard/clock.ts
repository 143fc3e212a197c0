/**
 * The server's clock as this page reckons it. Elapsed times, decision deadlines and ETAs
 * subtract server timestamps from "now": with the browser's clock minutes off the server's
 * (a laptop or VM that drifted), an open decision read "closes in 0 ms" with two minutes
 * left. The heartbeats of the page's streams carry the server's time; the offset of the
 * last one heard is applied to the browser's clock.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";

let offsetMs = 0;

/** Now on the server's clock, in milliseconds since the epoch. */
export function serverNow(): number {
  return Date.now() + offsetMs;
}

/** Learns the server's clock from a heartbeat's `server_time`. */
export function heardServerTime(time: Timestamp | undefined): void {
  if (!time) return;
  offsetMs = Number(time.seconds) * 1000 + Math.floor(time.nanos / 1e6) - Date.now();
}
