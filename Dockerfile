# syntax=docker/dockerfile:1
#
# padserve container images. Commands, volumes and what was checked: docs/deploy.md.
#
#   CPU  (default, last stage "runtime"): docker build -t padserve:0.1.0 .
#   CUDA (stage "cuda", linux/amd64):     docker build --target cuda -t padserve:0.1.0-cuda .
#
# Stages
#   build       npm ci (offline-safe: onnxruntime-node's CUDA download is skipped), tsc into dist/, prune dev deps.
#               scripts/docker-steps.sh replays this stage's COPY and RUN lines in a scratch folder without a Docker
#               engine (test/deploy.test.ts with PADSERVE_DOCKER_STEPS=1): keep them plain COPY/RUN lines, no globs.
#   build-cuda  the build stage + onnxruntime-node's CUDA 12 provider libraries (its postinstall with
#               ONNXRUNTIME_NODE_INSTALL=cuda12 downloads them from NuGet: needs the internet at build time).
#   cuda        GPU image: NVIDIA CUDA 12 + cuDNN 9 runtime, Node 20 binary copied from the build stage.
#   runtime     CPU image: node:20 slim. Last, so that a plain `docker build .` gives it.
#
# Both images: non-root user 10001, app files owned by root (read-only for the server), the model repository at
# /models (PADSERVE_MODEL_REPOSITORY): mount a volume there; the default models (~1.5 GB+) are built into it on
# the first start when missing. No VOLUME instruction on purpose: it would create an anonymous volume per run and
# would discard what a derived image writes to /models (an image with models baked in).
# tini is PID 1 and forwards SIGTERM to Node, which drains in-flight requests and exits 0.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    CI=true
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.build.json ./
COPY bin/ ./bin/
COPY data/ ./data/
COPY server/ ./server/
COPY src/ ./src/
# npm ci runs `prepare` (tsc) too; the explicit build keeps the image right if `prepare` ever changes.
RUN --mount=type=cache,target=/root/.npm,sharing=locked npm ci
RUN npm run build
RUN npm prune --omit=dev
# onnxruntime-node ships its native library for every OS and CPU (~290 MB): keep only this platform's (~45 MB).
RUN platform="$(node -p 'process.platform + "/" + process.arch')" \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d ! -path "*/napi-v6/${platform}" -exec rm -rf {} + \
 && test -f "node_modules/onnxruntime-node/bin/napi-v6/${platform}/onnxruntime_binding.node"

FROM build AS build-cuda
# `npm rebuild` runs the same postinstall that `npm ci` would run with ONNXRUNTIME_NODE_INSTALL=cuda12, on the
# already pruned tree. The variable wins over the project .npmrc's `onnxruntime-node-install=skip` (the install
# script reads ONNXRUNTIME_NODE_INSTALL first). A failed download exits non-zero (seen offline: ENOTFOUND
# api.nuget.org) and the `test -f` lines make sure the provider libraries are there.
ENV ONNXRUNTIME_NODE_INSTALL=cuda12
RUN npm rebuild onnxruntime-node \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_shared.so

FROM ${CUDA_IMAGE} AS cuda
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 padserve \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin padserve \
 && mkdir -p /models \
 && chown 10001:10001 /models
# The official Node 20 binary needs glibc >= 2.28 and libstdc++ (GLIBCXX_3.4.21): Ubuntu 22.04 has both.
COPY --from=build-cuda /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
ENV NODE_ENV=production \
    PADSERVE_HOST=0.0.0.0 \
    PADSERVE_PORT=8080 \
    PADSERVE_MODEL_REPOSITORY=/models \
    PADSERVE_DEVICE=cuda
COPY --from=build-cuda /app/package.json ./package.json
COPY --from=build-cuda /app/bin ./bin
COPY --from=build-cuda /app/data ./data
COPY --from=build-cuda /app/dist ./dist
COPY --from=build-cuda /app/node_modules ./node_modules
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PADSERVE_PORT||8080)+'/v2/health/live',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "bin/padserve.js"]
CMD ["serve", "--device", "cuda"]

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
