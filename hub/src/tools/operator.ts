// npm run operator -- NAME [--role admin|viewer] [--password-stdin] [--file PATH]
// Adds an operator (dashboard sign-in) or sets a new password, and prints a
// generated password once (or reads one from stdin). Only a scrypt hash is
// stored. --role: admin (everything) or viewer (read only); without it an
// existing account keeps its role and a new one is an admin. A running hub reads the file at start; restart it to apply.
// The file is the hub's (HUB_OPERATORS_FILE, else HUB_DATA_DIR/operators.json);
// relative paths are taken from where the command was run, as the hub does.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { generatePassword, Operators } from '../auth/operators.ts';
import { ROLES, type Role } from '../auth/schemas.ts';
import { fromInvocation, hubPaths } from '../core/paths.ts';

const { values, positionals } = parseArgs({
  options: {
    'password-stdin': { type: 'boolean', default: false },
    file: { type: 'string' },
    role: { type: 'string' },
  },
  allowPositionals: true,
  strict: true,
});

const file = values.file !== undefined ? fromInvocation(values.file, process.env, process.cwd()) : hubPaths(process.env, process.cwd()).operatorsFile;
const name = positionals[0];
const USAGE = 'usage: npm run operator -- NAME [--role admin|viewer] [--password-stdin] [--file PATH]';
if (!name) {
  console.error(USAGE);
  process.exit(2);
}
const role = values.role;
if (role !== undefined && !(ROLES as readonly string[]).includes(role)) {
  console.error(`operator: --role ${role}: expected one of ${ROLES.join(', ')}\n${USAGE}`);
  process.exit(2);
}
try {
  const password = values['password-stdin'] ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : generatePassword();
  const ops = new Operators({ file, sessionsFile: null, sessionTtlMs: 1000 });
  await ops.setPassword(name, password, { role: role as Role | undefined });
  if (values['password-stdin']) console.error(`operator ${name} saved in ${file}`);
  else {
    console.error(`operator ${name} (${ops.roleOf(name)}) saved in ${file}. Password (shown once):`);
    console.log(password);
  }
  console.error('restart the hub to apply');
} catch (err) {
  console.error(`operator: ${(err as Error).message}`);
  process.exit(1);
}
