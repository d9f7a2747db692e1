// core/: the history port: what the dashboard's history API asks for and
// gets back. InfluxDB (sinks/influx/history.ts) and the in-memory rollups
// (live/rollups.ts) implement it; http/history.ts parses requests into it.
// Imports: nothing.

export interface HistoryQuery {
  metric: string;
  scope: { kind: 'device'; id: string } | { kind: 'group'; key: string; value: string } | { kind: 'fleet' };
  fromMs: number;
  toMs: number;
  stepMs: number;
}

export interface HistoryPoint { t: number; count: number; mean: number; min: number; max: number }

export interface HistorySource {
  readonly name: string;
  query(q: HistoryQuery): Promise<HistoryPoint[]>;
}
