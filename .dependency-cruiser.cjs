// The module graph, enforced: `npm run depcheck` fails on any import that
// breaks the layering written down in README "Architecture" and the header
// comment of each hub/src folder. Paths are relative to the repository root.
// Imports are followed across workspaces (`@telemetry/*` resolves to the
// real files through the node_modules symlinks) and `import type` counts:
// a type-only import couples modules just as much for whoever changes them.
// hub/test/module-graph.test.ts feeds every rule a violation and checks that
// it is reported, so a rule that stops matching fails the tests.

/** A hub/src folder and what it may import of the hub besides itself. */
const HUB_FOLDERS = {
  core: [],
  auth: ['core'],
  spool: ['core'],
  sinks: ['spool', 'core'],
  live: ['auth', 'core'],
  ingest: ['spool', 'live', 'auth', 'core'],
  http: ['auth', 'live', 'core'],
  tools: ['auth', 'core'],
  devices: ['core'],
  cluster: ['spool', 'ingest', 'live', 'auth', 'devices', 'core'],
};

/** The hub's folder matrix, one rule per folder so a violation names it. */
const folderRules = Object.entries(HUB_FOLDERS).map(([folder, allowed]) => ({
  name: `hub-${folder}-imports-only-${allowed.length ? allowed.join('-') : 'itself'}`,
  comment: `hub/src/${folder}/ may import only ${[folder, ...allowed].map((f) => `${f}/`).join(', ')} of the hub (README "Architecture"; the folder's header comment).`,
  severity: 'error',
  from: { path: `^hub/src/${folder}/` },
  // Folders only: a root file is hub-folders-never-import-root-files' to report.
  to: { path: '^hub/src/[^/]+/', pathNot: `^hub/src/(${[folder, ...allowed].join('|')})/` },
}));

/** Workspaces of ours, by folder. */
const WORKSPACES = ['proto', 'hub', 'device-sim', 'dashboard'];
/** Our folders that are not a workspace's own (the root's scripts and tests). */
const ROOT_FOLDERS = ['scripts', 'test'];

/** A dependency that is resolved through a `@telemetry/*` package name (its `exports`), not a relative path. */
const VIA_PACKAGE_NAME = ['aliased-workspace'];

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Modules form no cycle (type-only imports included): each one can be understood, tested and changed from its dependencies up.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-import-of-build-output',
      comment: 'Sources import sources: a workspace\'s dist/ is what `npm run build` makes of them, possibly stale, and outside every rule below.',
      severity: 'error',
      from: {},
      to: { path: '^(proto|hub|device-sim|dashboard)/dist/' },
    },
    {
      name: 'no-unresolvable',
      comment: 'Every import resolves. An import that does not is a broken build, and would also slip past every rule below (they match resolved paths).',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    ...folderRules,
    {
      name: 'hub-sinks-read-the-spool-through-spool-reader',
      comment: 'A sink depends on the SpoolReader interface (hub/src/spool/reader.ts), never on the Spool class or the BatchStore seam: any durable log with a reader side can feed it.',
      severity: 'error',
      from: { path: '^hub/src/sinks/' },
      to: { path: '^hub/src/spool/', pathNot: '^hub/src/spool/reader\\.ts$' },
    },
    {
      name: 'hub-ingest-uses-spool-only-through-batch-store',
      comment: 'Ingest knows the BatchStore seam (hub/src/spool/store.ts), not a concrete store: a memory store, the disk spool or JetStream sit behind it.',
      severity: 'error',
      from: { path: '^hub/src/ingest/' },
      to: { path: '^hub/src/spool/', pathNot: '^hub/src/spool/store\\.ts$' },
    },
    {
      name: 'hub-ingest-uses-spool-live-auth-as-types-only',
      comment: 'Ingest is handed its store, live feed (LiveFeed) and authenticator (DeviceAuthenticator); it imports their interfaces (`import type`), never an implementation.',
      severity: 'error',
      from: { path: '^hub/src/ingest/' },
      to: { path: '^hub/src/(spool|live|auth)/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'hub-folders-never-import-root-files',
      comment: 'Root files (app.ts, main.ts, index.ts, route-table.ts, file-watch.ts) wire the folders together; nothing inside a folder imports one back.',
      severity: 'error',
      from: { path: '^hub/src/[^/]+/' },
      to: { path: '^hub/src/[^/]+$' },
    },
    {
      name: 'nothing-imports-hub-main',
      comment: 'main.ts reads the environment, listens and handles signals: it is the process, never a library (buildApp is).',
      severity: 'error',
      from: {},
      to: { path: '^hub/src/main\\.ts$' },
    },
    {
      name: 'only-core-uws-imports-the-uws-binding',
      comment: 'hub/src/core/uws.ts is the one module that loads uWebSockets.js (which build, native or not); everything else takes its types from there.',
      severity: 'error',
      from: { pathNot: '^hub/src/core/uws\\.ts$' },
      to: { path: '(^|/)(@trufflesuite/uws-js-unofficial|uWebSockets\\.js)(/|$)' },
    },
    {
      name: 'hub-folders-take-uws-types-only',
      comment: 'Inside the hub folders core/uws.ts is imported as `import type`: only root files (app.ts, main.ts, index.ts) load the binding.',
      severity: 'error',
      from: { path: '^hub/src/[^/]+/', pathNot: '^hub/src/core/' },
      to: { path: '^hub/src/core/uws\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'hub-imports-only-proto-of-our-packages',
      comment: 'The hub depends on the schema, not on the simulator, the dashboard (served from its build output, not imported) or the root scripts and tests.',
      severity: 'error',
      from: { path: '^hub/src/' },
      to: { path: `^(${['device-sim', 'dashboard', 'hub/test', ...ROOT_FOLDERS].join('|')})/` },
    },
    ...['device-sim', 'dashboard'].map((app) => ({
      name: `${app}-imports-only-proto-of-our-packages`,
      comment: `${app}/src imports no other app (README: no app imports another app) and no root script or test; of ours only @telemetry/proto.`,
      severity: 'error',
      from: { path: `^${app}/src/` },
      to: { path: `^(${[...WORKSPACES.filter((w) => w !== app && w !== 'proto'), ...ROOT_FOLDERS].join('|')})/` },
    })),
    {
      name: 'packages-reach-proto-by-package-name',
      comment: 'Proto is imported as `@telemetry/proto` (its exports), never by a relative path into proto/: the package boundary is its public index.',
      severity: 'error',
      from: { path: '^(hub|device-sim|dashboard)/src/' },
      to: { path: '^proto/', dependencyTypesNot: VIA_PACKAGE_NAME },
    },
    {
      name: 'proto-imports-nothing-of-ours',
      comment: 'proto is the one schema every package imports; it imports none of them.',
      severity: 'error',
      from: { path: '^proto/' },
      to: { path: `^(${[...WORKSPACES.filter((w) => w !== 'proto'), ...ROOT_FOLDERS].join('|')})/` },
    },
    {
      name: 'test-support-imports-only-node-builtins',
      comment: 'test/support/ (until, within, freePort, child processes, temp dirs) is shared by the tests of every package and the root scripts: it imports node: builtins and its own modules only, nothing of ours and no package, so any of them can import it. Who may import it needs no rule: src/ and proto/ already import nothing of test/.',
      severity: 'error',
      from: { path: '^test/support/' },
      to: { pathNot: '^test/support/', dependencyTypesNot: ['core'] },
    },
    {
      name: 'scripts-and-tests-reach-hub-src-through-its-exports',
      comment: 'Root scripts and tests use `@telemetry/hub` (hub/src/index.ts through the package exports), or hub/test support modules (helpers, influxd), never a hub internal by path.',
      severity: 'error',
      from: { path: `^(${ROOT_FOLDERS.join('|')})/` },
      to: { path: '^hub/src/', dependencyTypesNot: VIA_PACKAGE_NAME },
    },
    {
      name: 'scripts-and-tests-reach-other-workspaces-through-their-exports',
      comment: 'Root scripts and tests import proto, device-sim and dashboard by package name, never by a path into their sources.',
      severity: 'error',
      from: { path: `^(${ROOT_FOLDERS.join('|')})/` },
      to: { path: '^(proto|device-sim|dashboard)/', dependencyTypesNot: VIA_PACKAGE_NAME },
    },
  ],
  options: {
    // Third-party code and build output are leaves: their imports are not
    // ours to check (an import of build output is itself a violation).
    doNotFollow: { path: ['(^|/)node_modules/', '^(proto|hub|device-sim|dashboard)/dist/'] },
    // `import type` and type-only re-exports are dependencies too.
    tsPreCompilationDeps: true,
    // Dependency types come from the package.json files from a module up to
    // the root: the root's `workspaces` is what marks `@telemetry/*` imports
    // as aliased-workspace (package name) rather than a path into a package.
    combinedDependencies: true,
    // The root tsconfig (scripts/, test/) carries the shared compiler options
    // (NodeNext, allowImportingTsExtensions): `.ts` specifiers resolve as tsx runs them.
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      // Workspace packages resolve through their `exports` only, as Node does,
      // so a deep import past a package's index does not resolve (no-unresolvable).
      exportsFields: ['exports'],
      // `@telemetry/source`: our workspaces export their src/ under it (dist/
      // otherwise), and the rules are about sources; without it every
      // `@telemetry/*` import would land in dist/ and slip past them. `types`: type-only entry points such as svelte/action.
      conditionNames: ['@telemetry/source', 'import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
