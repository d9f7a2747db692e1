// scripts/bench/: what the ingest comparison of `npm run bench` asks of a
// load generator (the device-sim lean mode for the hub and the ws baseline,
// scripts/bench/mqtt-load.ts for mosquitto): closed-loop clients that keep
// `window` messages unacked each, stop by themselves, and report.

export interface LoadOptions {
  /** ws://127.0.0.1:PORT/v1/devices (hub, ws baseline) or mqtt://127.0.0.1:PORT (mosquitto). */
  url: string;
  clients: number;
  /** Unacked messages each client keeps in flight. */
  window: number;
  readingsPerMessage: number;
  /** Client processes the clients are spread over. */
  processes: number;
  /** The clients stop by themselves after this long, whatever happens to the run. */
  maxSeconds: number;
  /** Device tokens (scripts/sim-fleet.ts wrote them) and the id prefix. */
  tokensFile: string;
  prefix: string;
  /** Source addresses the clients bind to, round-robin. */
  sourceAddresses: string[];
  root: string;
  /** Open loop: messages per second each client sends (lean generator only); absent: closed loop, as fast as acks return. */
  ratePerClient?: number;
  /** mqtt-load: the messages to publish, one base64 line each (what the lean generator sent, captured); else payloads.ts. */
  payloadFile?: string;
}

export interface LoadResult {
  /** Messages acked: within the measured interval when `windowed`, else over the whole run. */
  acked: number;
  readingsAcked: number;
  /** Messages sent that the server never acked (by seq or PUBACK) though it should have. */
  lost: number | null;
  /** Closes other than the final clean one, refusals, client errors. */
  errors: number;
  latency: { p50Ms: number; p99Ms: number; maxMs?: number; samples: number };
  /** Open loop: batches sent later than their schedule (the lean generator's behindSchedule). */
  behindSchedule?: number;
  /** Messages still unacked when the clients stopped (the closed loop's last window; not lost). */
  unackedAtEnd?: number;
  notes: string[];
  /** The generator's own report, as it gave it. */
  raw?: unknown;
}

export interface LoadHandle {
  /** Which client this is, for the table: "mqtt.js 5.16.0", "device-sim lean". */
  readonly client: string;
  /** Whether markStart()/markEnd() bound what finish() reports (else it covers the whole run, warm-up included). */
  readonly windowed: boolean;
  /** Resolves when every client is connected (or rejects when the generator failed to start). */
  readonly ready: Promise<void>;
  markStart(): void;
  markEnd(): void;
  /** Root pids of the generator's processes (their descendants count too) for its CPU. */
  pids(): number[];
  /** Stops the clients (if they have not stopped already) and collects their report. */
  finish(): Promise<LoadResult>;
}
