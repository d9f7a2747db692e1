// npm run device-token -- --add ID [--tag site=lab] [--file PATH]
// Adds a device to the registry (or gives it a new token) and prints the
// token once; only its hash is stored. --list shows devices, --disable ID
// and --remove ID revoke (a running hub closes the session with 4008).
// The registry is the hub's (HUB_DEVICES_FILE, else HUB_DATA_DIR/devices.json);
// relative paths are taken from where the command was run, as the hub does.
import { parseArgs } from 'node:util';
import { addDevice, readRegistryFile, writeRegistryFile } from '../auth/registry.ts';
import { fromInvocation, hubPaths } from '../core/paths.ts';

const { values } = parseArgs({
  options: {
    add: { type: 'string' },
    remove: { type: 'string' },
    disable: { type: 'string' },
    list: { type: 'boolean', default: false },
    tag: { type: 'string', multiple: true, default: [] },
    file: { type: 'string' },
  },
  strict: true,
});

const file = values.file !== undefined ? fromInvocation(values.file, process.env, process.cwd()) : hubPaths(process.env, process.cwd()).devicesFile;
try {
  if (values.add) {
    const tags: Record<string, string> = {};
    for (const t of values.tag ?? []) {
      const eq = t.indexOf('=');
      if (eq <= 0) throw new Error(`--tag ${t}: expected key=value`);
      tags[t.slice(0, eq)] = t.slice(eq + 1);
    }
    const token = addDevice(file, values.add, tags);
    console.error(`device ${values.add} added to ${file}. Its token (shown once, store it on the device):`);
    console.log(token);
  } else if (values.remove || values.disable) {
    const reg = readRegistryFile(file);
    const id = values.remove || values.disable || '';
    if (!reg.devices[id]) throw new Error(`no device ${id} in ${file}`);
    if (values.remove) delete reg.devices[id];
    else reg.devices[id].disabled = true;
    writeRegistryFile(file, reg);
    console.error(`device ${id} ${values.remove ? 'removed' : 'disabled'}`);
  } else if (values.list) {
    const reg = readRegistryFile(file);
    for (const [id, e] of Object.entries(reg.devices)) {
      console.log(`${id}\t${e.disabled ? 'disabled' : 'enabled'}\t${Object.entries(e.tags ?? {}).map(([k, v]) => `${k}=${v}`).join(',')}`);
    }
  } else {
    console.error('usage: npm run device-token -- --add ID [--tag key=value ...] | --list | --disable ID | --remove ID  [--file PATH]');
    process.exit(2);
  }
} catch (err) {
  console.error(`device-token: ${(err as Error).message}`);
  process.exit(1);
}
