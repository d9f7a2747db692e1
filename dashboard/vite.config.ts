// Build and dev-server config. `vite build` writes dist/ (index.html plus
// assets/*), which the hub serves at / and /assets/*. `vite` (npm run dev)
// serves the app with HMR and proxies the hub's endpoints to HUB_URL
// (default http://127.0.0.1:8080; https works with the self-signed dev cert).
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defaultClientConditions, defineConfig } from 'vite';

const hubUrl = process.env['HUB_URL'] ?? 'http://127.0.0.1:8080';
const hubHttp = { target: hubUrl, secure: false };

export default defineConfig({
  base: '/',
  plugins: [svelte()],
  // Bundle @telemetry/proto from its TypeScript sources (package.json
  // "exports"), as the tests and the type checker do, not from proto/dist.
  resolve: { conditions: ['@telemetry/source', ...defaultClientConditions] },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 600,
    // Everything as files under assets/ (the hub serves /assets/*), nothing inlined as data: URLs.
    assetsInlineLimit: 0,
  },
  optimizeDeps: {
    // Imported from the linked @telemetry/proto sources, so the scanner may miss it.
    include: ['protobufjs/minimal.js'],
  },
  server: {
    proxy: {
      '/api': hubHttp,
      '/login': hubHttp,
      '/logout': hubHttp,
      '/healthz': hubHttp,
      '/readyz': hubHttp,
      '/v1/live': { target: hubUrl.replace(/^http/, 'ws'), ws: true, secure: false },
    },
  },
});
