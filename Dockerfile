# sluice's image: `docker build -t sluice:0.1.0 .` (docker-compose.yml builds the same file).
# Node 24 is an active LTS (supported to April 2028); package.json's engines (>=20) allows it, and
# test/deploy/image-node.test.ts runs the built service on the same Node release.

# --- build: every dependency, then TypeScript → dist/ ----------------------------------------
FROM node:24-alpine AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script would compile before the sources are copied.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

# --- runtime: production dependencies and the compiled service only -------------------------
FROM node:24-alpine
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` runs tsc, which is a dev dependency and not installed here.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
# Read at run time: the protos (gRPC, reflection), the Redis scripts, the bundled example config.
COPY proto ./proto
COPY lua ./lua
COPY examples ./examples
# The image's `node` user (uid/gid 1000), numeric so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# gRPC (GRPC_PORT), HTTP /healthcheck and /json (PORT), debug /rlconfig and /metrics (DEBUG_PORT).
EXPOSE 8081 8080 6070
# 200 once a config is loaded and the store answers (alpine's busybox wget exits 1 on a 500).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD wget -q -T 2 -O /dev/null "http://127.0.0.1:${PORT:-8080}/healthcheck" || exit 1
ENTRYPOINT ["node", "dist/src/cli/main.js"]
# Serves the bundled OAuth2 example with the in-memory store. Compose and Kubernetes run plain
# `serve`, which reads the config directory from RUNTIME_ROOT/... (and REDIS_URL) instead.
CMD ["serve", "--config", "examples/oauth2"]
