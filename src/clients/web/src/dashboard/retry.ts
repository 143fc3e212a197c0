// How long to wait before trying a call again: backoff with jitter, and never less than the
// server asked for. Over a limit (RESOURCE_EXHAUSTED) the server says when to come back, in a
// RetryInfo; a page that retried sooner only added to what it was refused for.
import type { ConnectError } from "@connectrpc/connect";
import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb";

/** 250 ms, 500 ms, 1 s, 2 s, then 4 s, with jitter so many tabs do not reconnect in step. */
function backoff(failures: number): number {
  const base = Math.min(4000, 250 * 2 ** (failures - 1));
  return base * (0.8 + Math.random() * 0.4);
}

/**
 * The wait after `err`, the `failures`-th failure in a row: the backoff, or the delay the
 * error's RetryInfo asks for when that is longer (with up to a fifth more, for the same reason
 * as the jitter).
 */
export function retryDelay(err: ConnectError, failures: number): number {
  const wait = backoff(failures);
  const asked = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  if (asked === undefined) return wait;
  const ms = Number(asked.seconds) * 1000 + asked.nanos / 1e6;
  return Math.max(wait, ms * (1 + Math.random() * 0.2));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
