// npm run operator -- NAME [--password-stdin] [--file data/operators.json]
// Adds an operator (dashboard sign-in) or sets a new password, and prints a
// generated password once (or reads one from stdin). Only a scrypt hash is
// stored. A running hub reads the file at start; restart it to apply.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { generatePassword, Operators } from '../auth/operators.ts';

const { values, positionals } = parseArgs({
  options: {
    'password-stdin': { type: 'boolean', default: false },
    file: { type: 'string', default: process.env.HUB_OPERATORS_FILE ?? `${process.env.HUB_DATA_DIR ?? './data'}/operators.json` },
  },
  allowPositionals: true,
  strict: true,
});

const name = positionals[0];
if (!name) {
  console.error('usage: npm run operator -- NAME [--password-stdin] [--file data/operators.json]');
  process.exit(2);
}
try {
  const password = values['password-stdin'] ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : generatePassword();
  const ops = new Operators({ file: values.file!, sessionsFile: null, sessionTtlMs: 1000 });
  await ops.setPassword(name, password);
  if (values['password-stdin']) console.error(`operator ${name} saved in ${values.file}`);
  else {
    console.error(`operator ${name} saved in ${values.file}. Password (shown once):`);
    console.log(password);
  }
  console.error('restart the hub to apply');
} catch (err) {
  console.error(`operator: ${(err as Error).message}`);
  process.exit(1);
}
