// npm run dev-cert [-- --out certs] [--force]   (--out relative to where it was run)
// Makes a local development CA and a localhost server certificate signed by
// it (openssl). Never commit the output (certs/ is git-ignored). Use:
//   HUB_TLS_CERT=certs/dev-cert.pem HUB_TLS_KEY=certs/dev-key.pem npm start
//   npm run sim -- --url wss://localhost:8080/v1/devices --ca certs/dev-ca.pem ...
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { fromInvocation, hubPaths } from '@telemetry/hub';

export interface DevCert { caFile: string; certFile: string; keyFile: string }

export function makeDevCert(outDir: string, opts: { force?: boolean } = {}): DevCert {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    throw new Error('dev-cert needs the openssl command (Debian/Ubuntu: apt-get install openssl)');
  }
  mkdirSync(outDir, { recursive: true });
  const f = (n: string) => join(outDir, n);
  const out: DevCert = { caFile: f('dev-ca.pem'), certFile: f('dev-cert.pem'), keyFile: f('dev-key.pem') };
  if (!opts.force && [out.caFile, out.certFile, out.keyFile].some(existsSync)) {
    throw new Error(`${outDir} already has a development certificate; pass --force to replace it`);
  }
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ext = f('dev-cert.ext');
  writeFileSync(ext, [
    'basicConstraints=CA:FALSE', 'keyUsage=digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
  ].join('\n') + '\n');
  try {
    run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '825',
      '-subj', '/CN=telemetry-hub development CA', '-keyout', f('dev-ca-key.pem'), '-out', out.caFile,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost',
      '-keyout', out.keyFile, '-out', f('dev-cert.csr')]);
    run(['x509', '-req', '-in', f('dev-cert.csr'), '-CA', out.caFile, '-CAkey', f('dev-ca-key.pem'), '-CAcreateserial',
      '-days', '825', '-extfile', ext, '-out', out.certFile]);
  } finally {
    for (const tmp of ['dev-cert.csr', 'dev-cert.ext', 'dev-ca.srl']) rmSync(f(tmp), { force: true });
  }
  chmodSync(out.keyFile, 0o600);
  chmodSync(f('dev-ca-key.pem'), 0o600);
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'certs' }, force: { type: 'boolean', default: false } } });
  try {
    const c = makeDevCert(fromInvocation(values.out, process.env, process.cwd()), { force: values.force });
    const simTokens = join(hubPaths(process.env, process.cwd()).dataDir, 'sim-tokens.json');
    console.log(`development certificate for localhost / 127.0.0.1 / ::1 (825 days):
  CA          ${c.caFile}   (trust this one in clients)
  certificate ${c.certFile}
  key         ${c.keyFile}

  HUB_TLS_CERT=${c.certFile} HUB_TLS_KEY=${c.keyFile} SIM_CA=${c.caFile} npm start
  npm run sim -- --url wss://127.0.0.1:8080/v1/devices --ca ${c.caFile} --tokens ${simTokens}`);
  } catch (err) {
    console.error(`dev-cert: ${(err as Error).message}`);
    process.exit(1);
  }
}
