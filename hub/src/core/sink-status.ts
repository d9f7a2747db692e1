// core/: what a sink reports about itself (shown in health, /readyz and
// the live path's figures), so readers need not import a sink. Imports: nothing.

export type SinkState = 'starting' | 'ok' | 'retrying' | 'unauthorized' | 'stopped';

export interface SinkStatus {
  readonly name: string;
  readonly state: SinkState;
  readonly linesWritten: number;
  readonly linesDeadLettered: number;
  /** Failed writes so far (retried or auth). */
  readonly errors: number;
  readonly lastError: string | null;
}
