#!/usr/bin/env bash
# containerlab for `podlab ... --runtime containerlab` and `make bench`: the user's own
# (PODLAB_CONTAINERLAB=/path/to/containerlab, or `containerlab` on PATH) or, where none is
# there and Go is, the pinned release built from the Go module proxy as containerlab's own
# release builds it (.goreleaser.yml: CGO_ENABLED=0, -trimpath, its build tags and ldflags).
# Where neither is possible it says so once and exits 0: nothing else needs containerlab.
# Run by scripts/setup-host.sh (make setup); idempotent.
set -euo pipefail

CLAB_MODULE=github.com/srl-labs/containerlab
CLAB_VERSION=${CLAB_VERSION:-v0.79.0}
CLAB_BIN_DIR=${CLAB_BIN_DIR:-/usr/local/bin}
# The release's tags, less `podman`: the module proxy refuses two of podman's modules
# (go.podman.io/podman/v6@v6.1.0, go.podman.io/common@v0.69.1: 403), and the podman
# runtime is the only code behind that tag (runtime/podman: //go:build linux && podman).
# podlab drives containerlab's docker runtime only.
CLAB_TAGS="exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper exclude_graphdriver_overlay containers_image_openpgp"

say() { printf 'setup: %s\n' "$*"; }

if [ -n "${PODLAB_CONTAINERLAB:-}" ]; then
    if "$PODLAB_CONTAINERLAB" version >/dev/null 2>&1; then
        say "containerlab: using PODLAB_CONTAINERLAB=$PODLAB_CONTAINERLAB"
    else
        say "containerlab: PODLAB_CONTAINERLAB=$PODLAB_CONTAINERLAB does not run; --runtime containerlab will fail"
    fi
    exit 0
fi
if found=$(command -v containerlab); then
    # the user's own (any version) or the one installed here before
    have=$(CLAB_VERSION_CHECK=disable containerlab version 2>/dev/null \
           | sed -n 's/^ *version: *//p' | head -1)
    say "containerlab: ${have:-unknown version} at $found"
    exit 0
fi
if ! command -v go >/dev/null; then
    say "containerlab: not installed, and no Go to build it with (install Go >= 1.21, or put containerlab on PATH); --runtime containerlab and the containerlab bench need it, nothing else does"
    exit 0
fi

# Not `go install $CLAB_MODULE@$CLAB_VERSION`: it also reads the module's version list
# (for deprecation notices), which the proxy refuses (403). Downloading the one version and
# building inside it is the same build: the module is the main module, its go.mod and
# go.sum decide every dependency (it has no replace directive).
say "containerlab: building $CLAB_VERSION from the Go module proxy (a few minutes of CPU)"
dir=$(go mod download -json "$CLAB_MODULE@$CLAB_VERSION" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    say "containerlab: go mod download $CLAB_MODULE@$CLAB_VERSION failed; --runtime containerlab unavailable"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$dir
if [ ! -e /proc/modules ]; then
    # containerlab (every release up to this one) fails its deploy with "open /proc/modules:
    # no such file or directory" on a kernel without loadable module support: its
    # ip_tables check returns that error instead of taking the modules as built in, as
    # its module loader right after it does. One patch, applied only on such kernels.
    src=$tmp/src
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
    patch -s -p1 -d "$src" < "$(dirname "${BASH_SOURCE[0]}")/containerlab/proc-modules.patch"
    say "containerlab: this kernel has no /proc/modules: built with scripts/containerlab/proc-modules.patch"
fi
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w -X $CLAB_MODULE/cmd.Version=${CLAB_VERSION#v} -X $CLAB_MODULE/cmd.commit=$CLAB_VERSION -X $CLAB_MODULE/cmd.date=$stamp"
if ! (cd "$src" && nice -n 10 env CGO_ENABLED=0 go build -trimpath -tags "$CLAB_TAGS" \
        -ldflags "$ldflags" -o "$tmp/containerlab" .); then
    say "containerlab: the build failed (above); --runtime containerlab unavailable"
    exit 0
fi
install -m 0755 "$tmp/containerlab" "$CLAB_BIN_DIR/containerlab"
CLAB_VERSION_CHECK=disable "$CLAB_BIN_DIR/containerlab" version >/dev/null
say "containerlab: $CLAB_VERSION installed as $CLAB_BIN_DIR/containerlab"
