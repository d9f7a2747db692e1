// scripts/bench/: what `npm run bench` prints first: the machine and the
// software every figure depends on, read at the start of the run.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, freemem, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { loadUws } from '@telemetry/hub';

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  freeMemoryGiB: number;
  /** 1, 5 and 15 minute load averages when the run started: a busy machine shows here. */
  loadAverage: number[];
  kernel: string;
  node: string;
  /** The uWebSockets.js binding the hub loads (hub/src/core/uws.ts), as it describes itself. */
  uws: string;
  mosquitto: string | null;
  mosquittoPath: string | null;
  ws: string;
  mqttJs: string;
  openFileLimit: string;
}

/** Where Debian's mosquitto is, or null. */
export function findMosquitto(): string | null {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto']) if (existsSync(p)) return p;
  const w = spawnSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' });
  return w.status === 0 && w.stdout.trim() ? w.stdout.trim() : null;
}

function mosquittoVersion(path: string | null): string | null {
  if (!path) return null;
  const r = spawnSync(path, ['-h'], { encoding: 'utf8', timeout: 5000 });
  const m = /mosquitto version (\S+)/.exec(`${r.stdout}${r.stderr}`);
  return m ? m[1]! : 'unknown version';
}

function packageVersion(root: string, name: string): string {
  try {
    return (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch { /* not Linux */ }
  return cpus()[0]?.model ?? 'unknown';
}

function uwsDescription(): string {
  try {
    return loadUws({ allowFallback: true }).description;
  } catch (err) {
    return `does not load: ${(err as Error).message}`;
  }
}

function fileLimit(): string {
  const r = spawnSync('sh', ['-c', 'ulimit -Sn; ulimit -Hn'], { encoding: 'utf8' });
  const [soft, hard] = r.stdout.trim().split('\n');
  return `${soft ?? '?'} soft / ${hard ?? '?'} hard`;
}

export function machine(root: string): Machine {
  const mosquittoPath = findMosquitto();
  return {
    cores: availableParallelism(),
    cpuModel: cpuModel(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    freeMemoryGiB: Math.round(freemem() / 2 ** 30),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    kernel: release(),
    node: process.version,
    uws: uwsDescription(),
    mosquitto: mosquittoVersion(mosquittoPath),
    mosquittoPath,
    ws: packageVersion(root, 'ws'),
    mqttJs: packageVersion(root, 'mqtt'),
    openFileLimit: fileLimit(),
  };
}

export function machineLines(m: Machine): string[] {
  return [
    `machine:   ${m.cores} cores, ${m.cpuModel}, ${m.memoryGiB} GiB (${m.freeMemoryGiB} free), load average ${m.loadAverage.join(' / ')} at the start`,
    `kernel:    Linux ${m.kernel}; open files per process ${m.openFileLimit}`,
    `node:      ${m.node}; uWebSockets.js binding: ${m.uws}`,
    `mosquitto: ${m.mosquitto ? `${m.mosquitto} (${m.mosquittoPath})` : 'not installed (sudo apt-get install mosquitto)'}; ws ${m.ws}; mqtt.js ${m.mqttJs}`,
  ];
}
