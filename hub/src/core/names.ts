// core/: the name rules every stage agrees on: the registry issues device
// ids and tag keys, ingest accepts metric names, and the history API, alarm
// rules and InfluxDB queries take them as input. All of them are plain
// ASCII with nothing a line-protocol or InfluxQL writer has to escape.
// Imports: nothing.

/** 1 to 128 of [A-Za-z0-9_:.-], starting with a letter or digit. */
export const DEVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_:.-]{0,127}$/;

/** A letter, then [A-Za-z0-9_.:-]; the length limit is HUB_MAX_METRIC_NAME_BYTES. */
export const METRIC_NAME_RE = /^[A-Za-z][A-Za-z0-9_.:-]*$/;

/** 1 to 64 of [A-Za-z0-9_], starting with a letter (InfluxDB reserves keys starting with `_`). */
export const TAG_KEY_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
