#!/usr/bin/env bash
# The CPU image of the Dockerfile, built for real with podman, then `llmrec serve` started in it:
#
#   scripts/image.sh build    # podman build -> localhost/llmrec:0.1.0-cpu
#   scripts/image.sh smoke    # build, then serve the demo catalog in a container and ask it for a recommendation
#
# For machines that reach package registries and nothing else (no Docker Hub):
#   - the base image is made from Debian's own packages (debootstrap bookworm, minbase; its Python is
#     3.11) when BASE_IMAGE (default python:3.11-slim-bookworm) cannot be pulled;
#   - the CPU build of torch comes from the wheel pip already finds here (pip's find-links, e.g. /opt/wheels),
#     served to the build over HTTP on loopback (TORCH_FIND_LINKS), so nothing pulls the CUDA build;
#   - where pip here trusts a proxy's CA bundle (pip's `cert`), the build's pip is given the same (PIP_CERT).
# The container is run with runc and explicit ulimits: on hybrid cgroup (v1 + v2) hosts crun refuses to
# start containers, and podman's default ulimits may exceed what a sandboxed root may set (PODMAN_RUN_FLAGS).
# The smoke test mounts a copy of a prepared LLMREC_HOME (the demo catalog, the encoder, its indexes) so the
# container starts in seconds; the intent model is left out (intent.backend=none) to keep it small.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/llmrec:0.1.0-cpu}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE=localhost/debian:bookworm-minbase
SOURCE_HOME=${LLMREC_HOME:-$HOME/.cache/llmrec}
PORT=${PORT:-8150}
PODMAN_RUN_FLAGS=${PODMAN_RUN_FLAGS:---runtime runc --ulimit nofile=$(ulimit -n):$(ulimit -Hn) --ulimit nproc=32768:32768}
read -r -a RUN_FLAGS <<< "$PODMAN_RUN_FLAGS"

command -v podman >/dev/null || { echo "image: podman not found (Debian: apt-get install podman runc debootstrap)" >&2; exit 1; }

base_image() {  # the Dockerfile's base if it can be pulled, else one made from Debian's packages
    if podman image exists "$BASE_IMAGE" || podman pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "$BASE_IMAGE"
        return
    fi
    if ! podman image exists "$LOCAL_BASE"; then
        echo "image: $BASE_IMAGE cannot be pulled; making $LOCAL_BASE with debootstrap (Debian's packages)" >&2
        local rootfs
        rootfs=$(mktemp -d /tmp/llmrec-rootfs.XXXXXX)
        debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
        tar -C "$rootfs" -c . | podman import - "$LOCAL_BASE" >/dev/null
        rm -rf "$rootfs"
    fi
    echo "$LOCAL_BASE"
}

wheelhouse() {  # the folder where pip finds the CPU build of torch on this machine (its find-links), if any
    local links
    links=$(pip config get global.find-links 2>/dev/null || true)
    links=${links:-${PIP_FIND_LINKS:-}}
    for dir in $links; do
        if compgen -G "$dir/torch-*+cpu-*.whl" >/dev/null; then echo "$dir"; return; fi
    done
}

build() {
    local base wheels server="" args=()
    base=$(base_image)
    wheels=$(wheelhouse)
    if [[ -n "$wheels" ]]; then
        python3 -m http.server 8765 --bind 127.0.0.1 --directory "$wheels" >/dev/null 2>&1 &
        server=$!
        trap 'kill $server 2>/dev/null || true' RETURN
        args+=(--build-arg "TORCH_FIND_LINKS=http://127.0.0.1:8765/")
    fi
    local cert
    cert=$(pip config get global.cert 2>/dev/null || true)
    cert=${cert:-${PIP_CERT:-}}
    if [[ -n "$cert" && -f "$cert" ]]; then  # pip here trusts a proxy's CA: so does pip in the build
        args+=(--volume "$cert:/etc/ssl/llmrec-build-ca.pem:ro" --build-arg "PIP_CERT=/etc/ssl/llmrec-build-ca.pem")
    fi
    echo "image: building $IMAGE on $base${wheels:+ (torch from $wheels)}" >&2
    podman build "${RUN_FLAGS[@]}" --network host --build-arg "BASE_IMAGE=$base" "${args[@]}" -t "$IMAGE" .
}

smoke() {
    build
    local home name=llmrec-image-smoke
    home=$(mktemp -d /tmp/llmrec-image-home.XXXXXX)
    trap 'podman rm -f '"$name"' >/dev/null 2>&1 || true; rm -rf '"$home" RETURN
    for part in data/demo models/multilingual-e5-small indexes/demo; do
        [[ -e "$SOURCE_HOME/$part" ]] || { echo "image: $SOURCE_HOME/$part is missing: run 'llmrec data prepare demo' and 'llmrec serve' once" >&2; return 1; }
        mkdir -p "$home/$(dirname "$part")"
        cp -a "$SOURCE_HOME/$part" "$home/$part"
    done
    chown -R 1000:1000 "$home"  # the image runs as user ray (uid 1000)
    podman run -d --name "$name" "${RUN_FLAGS[@]}" --network host -v "$home:/data/llmrec" -e LLMREC_HOME=/data/llmrec \
        "$IMAGE" llmrec serve --port "$PORT" --set intent.backend=none >/dev/null
    local started=$SECONDS
    until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do
        if (( SECONDS - started > 900 )) || [[ $(podman inspect -f '{{.State.Running}}' "$name") != true ]]; then
            podman logs --tail 50 "$name" >&2
            echo "image: llmrec serve in the container did not become ready" >&2
            return 1
        fi
        sleep 5
    done
    echo "image: ready after $((SECONDS - started)) s; asking for a recommendation" >&2
    curl -sf "http://127.0.0.1:$PORT/v1/recommend" -H 'Content-Type: application/json' -d '{"query": "funny animated movie for kids", "k": 3}'
    echo
}

case "${1:-build}" in
    build) build ;;
    smoke) smoke ;;
    *) echo "usage: scripts/image.sh [build|smoke]" >&2; exit 2 ;;
esac
