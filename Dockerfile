# The hub image. Node 20: the npm uWebSockets.js build has native binaries
# for Node 16/18/20 (the hub refuses the slow JS fallback on other versions).
FROM node:20-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production
# Workspace manifests first so the npm ci layer is cached across code changes.
COPY package.json package-lock.json ./
COPY proto/package.json proto/
COPY hub/package.json hub/
COPY device-sim/package.json device-sim/
COPY dashboard/package.json dashboard/
# tsx runs the TypeScript sources directly; it is a devDependency, so keep dev deps.
RUN npm ci --include=dev --no-audit --no-fund && npm cache clean --force

COPY tsconfig.base.json ./
COPY proto proto
COPY hub hub
COPY device-sim device-sim
COPY scripts scripts
# The dashboard, built into dashboard/dist (the hub serves it at /).
COPY dashboard dashboard
RUN npm run build -w dashboard

ENV HUB_HOST=0.0.0.0 HUB_PORT=8080 HUB_DATA_DIR=/data HUB_DEVICES_FILE=/data/devices.json
# Owned by the unprivileged user before VOLUME, so a new named volume is too.
RUN mkdir -p /data && chown node:node /data
VOLUME /data
EXPOSE 8080
USER node
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# exec form: the hub gets SIGTERM directly and shuts down gracefully.
CMD ["node", "--import", "tsx", "hub/src/main.ts"]
