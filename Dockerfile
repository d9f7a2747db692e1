# The hub image, in three stages:
#   build    every dependency, the sources, and `npm run build` (tsc for proto,
#            hub and device-sim into their dist/, Vite for the dashboard);
#            docker-compose.yml's `sim` service also runs from this stage;
#   deps     only the runtime dependencies of proto, hub and device-sim;
#   (final)  those dependencies and the build output, run with plain node:
#            no TypeScript, no dev dependencies, no sources.
# Node 20: the npm uWebSockets.js build has native binaries for Node
# 16/18/20 (the hub refuses the slow JS fallback on other versions).
FROM node:20-bookworm-slim AS build
WORKDIR /app
# Workspace manifests first so the npm ci layer is cached across code changes.
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY hub/package.json hub/
COPY device-sim/package.json device-sim/
COPY dashboard/package.json dashboard/
RUN npm ci --include=dev --no-audit --no-fund && npm cache clean --force
COPY tsconfig.base.json ./
COPY scripts scripts
COPY proto proto
COPY hub hub
COPY device-sim device-sim
COPY dashboard dashboard
# .dockerignore keeps the host's dist/ out, so this builds everything.
RUN npm run build

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY hub/package.json hub/
COPY device-sim/package.json device-sim/
COPY dashboard/package.json dashboard/
# -w: the dashboard's packages (Vite, Svelte) are build tools here, its
# bundle comes from the build stage.
RUN npm ci --omit=dev -w proto -w hub -w device-sim --no-audit --no-fund && npm cache clean --force

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules node_modules
COPY package.json ./
COPY proto/package.json proto/
COPY hub/package.json hub/
COPY device-sim/package.json device-sim/
# proto's dist imports the generated code where it is committed (proto/gen).
COPY --from=build /app/proto/gen proto/gen
COPY --from=build /app/proto/dist proto/dist
COPY --from=build /app/hub/dist hub/dist
COPY --from=build /app/device-sim/dist device-sim/dist
# The built dashboard (the hub serves it at /; its default HUB_DASHBOARD_DIR).
COPY --from=build /app/dashboard/dist dashboard/dist

ENV HUB_HOST=0.0.0.0 HUB_PORT=8080 HUB_DATA_DIR=/data HUB_DEVICES_FILE=/data/devices.json
# Owned by the unprivileged user before VOLUME, so a new named volume is too.
RUN mkdir -p /data && chown node:node /data
VOLUME /data
EXPOSE 8080
USER node
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# exec form: the hub gets SIGTERM directly and shuts down gracefully.
# Tools: node hub/dist/tools/device-token.js, node hub/dist/tools/operator.js;
# the simulator: node device-sim/dist/cli.js.
CMD ["node", "hub/dist/main.js"]
