// The live subscription as the store reads it: which frame entries belong to
// a topic the client asked for. Topic names are the hub's (proto/README.md,
// "Subscribing"); which page needs which is in router.svelte.ts.

export interface Topics {
  readonly list: readonly string[];
  readonly fleet: boolean;
  readonly devices: boolean;
  /** "fleet" and "group:K=V" scopes. */
  readonly scopes: ReadonlySet<string>;
  /** Ids of "device:ID" topics. */
  readonly deviceIds: ReadonlySet<string>;
}

export function parseTopics(list: readonly string[]): Topics {
  const scopes = new Set<string>();
  const deviceIds = new Set<string>();
  let devices = false;
  for (const t of list) {
    if (t === 'fleet' || t.startsWith('group:')) scopes.add(t);
    else if (t === 'devices') devices = true;
    else if (t.startsWith('device:')) deviceIds.add(t.slice('device:'.length));
  }
  return { list: [...list], fleet: scopes.has('fleet'), devices, scopes, deviceIds };
}
