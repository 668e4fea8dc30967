# syntax=docker/dockerfile:1
# tasks-api: the API (default command) and the webhook worker (`node dist/src/worker.js`) in one
# image. Not built on the project's machines (no container daemon there): CI checks this file
# statically with scripts/check-deploy.mjs and runs its runtime stage without Docker with
# scripts/check-deploy-runtime.sh. See docs/deploy.md.

# ---- build: the full install (TypeScript is a devDependency), then tsc into dist/
FROM node:24-bookworm-slim AS build
WORKDIR /app
# The workspace's manifest too: the lockfile lists packages/client, and npm ci wants it there.
COPY package.json package-lock.json ./
COPY packages/client/package.json packages/client/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY generated generated
RUN npm run build

# ---- runtime: production dependencies, the compiled code, and the files read at run time
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/client/package.json packages/client/
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist dist
# Read by path at start (src/http/contract.ts, from the folder holding package.json): the bundled
# contract served at /openapi.json and /openapi.yaml and validated against, and the /docs page.
COPY generated/openapi.json generated/openapi.yaml generated/docs.html generated/
# The code stays root's (the process cannot change it); only the embedded database's folder is
# the node user's, for a run without DATABASE_URL (PGlite in /app/.data; mount a volume there).
RUN mkdir .data && chown node:node .data
USER node
EXPOSE 3000
# /health/ready: 200 while the database answers, 503 when it does not or once SIGTERM arrived.
# The slim image has no curl: Node's fetch. The worker serves no HTTP: its compose service
# disables this check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The V8 settings keep the heap near what it holds (docs/performance.md#memory), as npm start does.
CMD ["node", "--max-semi-space-size=8", "--heap-growing-percent=50", "--import", "./dist/src/telemetry/preload.js", "dist/src/main.js"]
