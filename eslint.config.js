// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', 'proto/gen/**', 'dashboard/**/*.svelte', 'test-results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // node:test's test() returns a promise the runner awaits itself.
      '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-unnecessary-type-assertion': 'error',
      '@typescript-eslint/no-non-null-asserted-optional-chain': 'error',
      // A default: branch is a deliberate choice, not a forgotten case.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/prefer-promise-reject-errors': 'error',
      'no-restricted-syntax': ['error',
        { selector: "TSNonNullExpression:not([expression.type='MemberExpression'][expression.computed=true])", message: 'A non-null assertion where a check belongs: check the value (indexed access a[i]! is allowed).' },
      ],
      eqeqeq: ['error', 'always'],
      'prefer-const': 'error',
    },
  },
  {
    // In tests, benchmarks and dev scripts a wrong assumption throws on the
    // spot, which is the check; in the hub, the simulator and the dashboard a
    // non-null assertion has to be a check.
    files: ['**/test/**/*.ts', 'scripts/**/*.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    // The dashboard's Node-side files (Vite config, tests) have their own
    // tsconfig, which the project service does not find by itself.
    files: ['dashboard/vite.config.ts', 'dashboard/test/**/*.ts'],
    languageOptions: { parserOptions: { projectService: false, project: ['./dashboard/tsconfig.node.json'] } },
  },
  {
    // Plain JavaScript (this file, the dependency-cruiser rules, the
    // password worker) is not type-checked: lint it with the syntax rules only.
    files: ['**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly', __dirname: 'readonly' } },
  },
  {
    files: ['hub/src/auth/password-worker.js'],
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly' } },
  },
);
