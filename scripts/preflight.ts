// npm test's first step: the system packages the tests drive for real must be
// installed, and a missing one is named with the command that installs it,
// before any test runs. (.ci/run installs them on a fresh machine.)
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

interface Need { what: string; why: string; paths: string[]; onPath?: string; pkg: string }

const NEEDS: Need[] = [
  { what: 'influxd', why: 'the sink and storage tests run a real InfluxDB', paths: [process.env.INFLUXD ?? '/usr/bin/influxd'], pkg: 'influxdb' },
  { what: 'chromium', why: 'the dashboard\'s browser tests drive it (no browser is downloaded)', paths: ['/usr/bin/chromium'], pkg: 'chromium' },
  { what: 'nats-server', why: 'the cluster-mode tests run real NATS JetStream servers', paths: [process.env.NATS_SERVER ?? '/usr/sbin/nats-server'], onPath: 'nats-server', pkg: 'nats-server' },
  { what: 'openssl', why: 'the TLS tests make certificates with it', paths: [], onPath: 'openssl', pkg: 'openssl' },
];

function executable(p: string): boolean {
  try { accessSync(p, constants.X_OK); return true; } catch { return false; }
}

const missing = NEEDS.filter((n) => {
  const candidates = [...n.paths, ...(n.onPath ? (process.env.PATH ?? '').split(delimiter).map((d) => join(d, n.onPath!)) : [])];
  return !candidates.some(executable);
});
if (missing.length) {
  console.error('npm test needs system packages that are not installed:');
  for (const m of missing) console.error(`  - ${m.what} (Debian package ${m.pkg}): ${m.why}`);
  console.error(`Install them with:\n  sudo apt-get install -y --no-install-recommends ${missing.map((m) => m.pkg).join(' ')}\n(.ci/run does this on a fresh machine.)`);
  process.exit(1);
}
