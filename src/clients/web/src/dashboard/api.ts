// The dashboard's connection to Runstream: Connect-ES clients over grpc-web, through Envoy.
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { DecisionService } from "../gen/runstream/v1/decision_service_pb";
import { RunService } from "../gen/runstream/v1/run_service_pb";
import { StatsService } from "../gen/runstream/v1/stats_service_pb";
import { authInterceptor } from "./auth";

export interface Api {
  /** Where the grpc-web requests go (Envoy's listener). */
  readonly baseUrl: string;
  readonly runs: Client<typeof RunService>;
  readonly decisions: Client<typeof DecisionService>;
  /** The answering replica's figures (the admin role when the server wants tokens). */
  readonly stats: Client<typeof StatsService>;
}

interface DashboardConfig {
  /** The grpc-web endpoint's full URL; wins over api_port. */
  api_url?: string;
  /** The grpc-web endpoint's port on the page's own host name. */
  api_port?: number;
}

/**
 * Finds the grpc-web endpoint: config.json (written by `runstream dashboard`), else the
 * page's own origin (Envoy serving both). Only what the page's server says: the tab's token
 * goes with every call, so an endpoint taken from the page's address (a `?api=URL` a link
 * can carry, as an earlier version read) would hand it to whoever wrote the link.
 */
export async function resolveBaseUrl(): Promise<string> {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) {
      const config = (await response.json()) as DashboardConfig;
      if (config.api_url) return config.api_url.replace(/\/+$/, "");
      // The page's host name, not a fixed one: a page opened as localhost must call
      // localhost, or the browser treats the call as cross-site.
      if (config.api_port) return `${location.protocol}//${location.hostname}:${config.api_port}`;
    }
  } catch {
    // No config.json: served by something other than `runstream dashboard`.
  }
  return location.origin;
}

/**
 * How long a unary call (GetRun, ListRuns, SubmitDecision, ...) may take. Without it a frozen
 * server (a stopped process, a dead connection that gave no error) held the call, and with
 * it the page's reconnect, for ever; with it the call ends DEADLINE_EXCEEDED and the page
 * retries as after any lost connection. Streams opt out with `timeoutMs: 0`.
 */
export const CALL_TIMEOUT_MS = 10_000;

export function createApi(baseUrl: string): Api {
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [authInterceptor], defaultTimeoutMs: CALL_TIMEOUT_MS });
  return {
    baseUrl,
    runs: createClient(RunService, transport),
    decisions: createClient(DecisionService, transport),
    stats: createClient(StatsService, transport),
  };
}
