# syntax=docker/dockerfile:1
#
# padserve CPU image. Commands, volumes and what was checked: docs/deploy.md. The CUDA image: Dockerfile.cuda
# (built on this one).
#
#   docker build -t padserve:0.1.0 .
#
# Stages
#   build       npm ci (offline-safe: onnxruntime-node's CUDA download is skipped), tsc into dist/, prune dev deps.
#   runtime     CPU image: node:20 slim.
#
# Builds with BuildKit and with the classic builder (DOCKER_BUILDKIT=0, the only one on machines without buildx:
# no RUN --mount, so no npm cache mount; Docker's layer cache keeps `npm ci` until package.json,
# package-lock.json or .npmrc change). The classic builder builds every stage of a file up to the target, which
# is why the CUDA stages (NVIDIA base image, NuGet download) live in Dockerfile.cuda and not here.
# No registry? scripts/docker-base.sh builds a local node:20-bookworm-slim; `npm run test:container` builds and
# runs this image end to end (docs/deploy.md).
#
# Non-root user 10001, app files owned by root (read-only for the server), the model repository at /models
# (PADSERVE_MODEL_REPOSITORY): mount a volume there; the default models (~1.5 GB+) are built into it on the first
# start when missing. No VOLUME instruction on purpose: it would create an anonymous volume per run and would
# discard what a derived image writes to /models (an image with models baked in).
# tini is PID 1 and forwards SIGTERM to Node, which drains in-flight requests and exits 0.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    CI=true
# A build host behind a TLS-inspecting proxy: a base image holding its CA file +
# --build-arg NODE_EXTRA_CA_CERTS=<path> (scripts/docker-base.sh). Unset by default; not kept in the images.
ARG NODE_EXTRA_CA_CERTS
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the project's `prepare` (tsc) needs the sources, copied after this layer so that a source
# change does not rerun npm ci. No dependency needs its install script here: onnxruntime-node's is skipped above
# (Dockerfile.cuda runs it), protobufjs's only checks versions, esbuild's (tsx, a dev dependency) is not used.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY bin/ ./bin/
COPY data/ ./data/
COPY server/ ./server/
COPY src/ ./src/
RUN npm run build
RUN npm prune --omit=dev
# onnxruntime-node ships its native library for every OS and CPU (~290 MB): keep only this platform's (~45 MB).
RUN platform="$(node -p 'process.platform + "/" + process.arch')" \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d ! -path "*/napi-v6/${platform}" -exec rm -rf {} + \
 && test -f "node_modules/onnxruntime-node/bin/napi-v6/${platform}/onnxruntime_binding.node"

FROM ${NODE_IMAGE} AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 padserve \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin padserve \
 && mkdir -p /models \
 && chown 10001:10001 /models
WORKDIR /app
ENV NODE_ENV=production \
    PADSERVE_HOST=0.0.0.0 \
    PADSERVE_PORT=8080 \
    PADSERVE_MODEL_REPOSITORY=/models \
    PADSERVE_DEVICE=cpu
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/bin ./bin
COPY --from=build /app/data ./data
COPY --from=build /app/dist ./dist
COPY --from=build /app/node_modules ./node_modules
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PADSERVE_PORT||8080)+'/v2/health/live',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/padserve.js"]
CMD ["serve"]
