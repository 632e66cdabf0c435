#!/usr/bin/env bash
# Builds the Go strategies in strategies/ to WebAssembly, reproducibly.
#
#   strategies/build.sh              rebuild every .wasm in place
#   strategies/build.sh --generate   regenerate sdk/strategy/ from proto/strategy.proto,
#                                    tidy go.mod/go.sum, then rebuild
#   strategies/build.sh --check      regenerate and rebuild into a temporary directory and
#                                    fail, listing each file, if anything differs from what
#                                    is committed (also gofmt and the sdk tests); changes
#                                    nothing in the tree
#
# Every directory under examples/ and testdata/ holding a main.go is one strategy;
# it builds to <dir>/<dir name>.wasm. The bytes are reproducible: the Go toolchain
# is pinned by go.mod's toolchain line (fetched from the Go module proxy when the
# local go is another version), paths are trimmed, and every setting that changes
# the output is fixed here. Go's caches live in $KUBETRADE_CACHE/go (default
# ~/.cache/kubetrade/go), shared by every checkout on the machine.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
MODULE="github.com/kubetrade/kubetrade/strategies"
GO_PLUGIN_VERSION="v0.9.0"   # github.com/knqyf263/go-plugin, the binding generator
PYTHON="$ROOT/.venv/bin/python"

mode=build
case "${1:-}" in
    "") ;;
    --generate) mode=generate ;;
    --check) mode=check ;;
    -h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "build.sh: go is not on PATH" >&2; exit 1; }

# One cache per machine, outside the checkout, so a fresh clone (as in CI)
# reuses the modules and build results of the last one.
CACHE="${KUBETRADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetrade}"
export GOPATH="$CACHE/go"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$GOPATH/build"
# The exact toolchain named in go.mod, whatever go is on PATH.
GOTOOLCHAIN="$(sed -n 's/^toolchain \(go[0-9.]*\)$/\1/p' "$HERE/go.mod")"
[[ -n "$GOTOOLCHAIN" ]] || { echo "build.sh: go.mod has no toolchain line" >&2; exit 1; }
export GOTOOLCHAIN
# Settings that would otherwise leak in from the caller's environment or go env.
export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOWASM= GOEXPERIMENT=
unset GOOS GOARCH

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# generate DIR: writes the generated guest bindings to DIR/*.pb.go.
generate() {
    local plugin_dir="$GOPATH/tools/go-plugin@$GO_PLUGIN_VERSION"
    if [[ ! -x "$plugin_dir/protoc-gen-go-plugin" ]]; then
        GOBIN="$plugin_dir" go install \
            "github.com/knqyf263/go-plugin/cmd/protoc-gen-go-plugin@$GO_PLUGIN_VERSION"
    fi
    [[ -x "$PYTHON" ]] || {
        echo "build.sh: $PYTHON missing; run scripts/bootstrap.sh dev" >&2
        return 1
    }
    local include out="$work/gen"
    include="$("$PYTHON" -c 'import grpc_tools, os; print(os.path.dirname(grpc_tools.__file__))')"
    rm -rf "$out" && mkdir -p "$out"
    "$PYTHON" -m grpc_tools.protoc -I "$HERE/proto" -I "$include/_proto" \
        --plugin=protoc-gen-go-plugin="$plugin_dir/protoc-gen-go-plugin" \
        --go-plugin_out="$out" --go-plugin_opt=module="$MODULE" strategy.proto
    # Only the wasip1 guest side is kept: the host side (build tag !wasip1) is a
    # wazero host, and kubetrade's host is Python.
    rm -f "$out/sdk/strategy/strategy_host.pb.go" "$out/sdk/strategy/strategy_options.pb.go"
    rm -rf "$1" && mkdir -p "$1"
    cp "$out"/sdk/strategy/*.pb.go "$1"/
}

# build DIR OUT: compiles the strategy in DIR (relative to strategies/) to OUT.
build() {
    (cd "$HERE" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath \
        -buildvcs=false -o "$2" "./$1")
}

strategies=()
for main in "$HERE"/examples/*/main.go "$HERE"/testdata/*/main.go; do
    [[ -e "$main" ]] || continue
    dir="${main%/main.go}"
    strategies+=("${dir#"$HERE"/}")
done

case "$mode" in
generate | build)
    if [[ "$mode" == generate ]]; then
        generate "$work/bindings"
        rm -f "$HERE"/sdk/strategy/*.pb.go
        mkdir -p "$HERE/sdk/strategy"
        cp "$work"/bindings/*.pb.go "$HERE/sdk/strategy/"
        (cd "$HERE" && GOFLAGS= go mod tidy)
        echo "generated sdk/strategy/ ($(ls "$HERE"/sdk/strategy/*.pb.go | wc -l) files)"
    fi
    for dir in "${strategies[@]}"; do
        wasm="$dir/$(basename "$dir").wasm"
        build "$dir" "$work/out.wasm"
        # Replace the committed file only when the bytes change, so an
        # unchanged strategy keeps its timestamp.
        if cmp -s "$work/out.wasm" "$HERE/$wasm"; then
            echo "unchanged $wasm"
        else
            mv "$work/out.wasm" "$HERE/$wasm"
            echo "built     $wasm ($(wc -c <"$HERE/$wasm") bytes)"
        fi
    done
    ;;
check)
    failed=()
    generate "$work/bindings"
    for file in "$work"/bindings/*.pb.go "$HERE"/sdk/strategy/*.pb.go; do
        name="sdk/strategy/$(basename "$file")"
        if ! cmp -s "$work/bindings/$(basename "$file")" "$HERE/$name"; then
            [[ " ${failed[*]-} " == *" $name "* ]] || failed+=("$name")
        fi
    done
    if ! (cd "$HERE" && go mod tidy -diff >"$work/tidy.diff" 2>&1); then
        cat "$work/tidy.diff" >&2
        failed+=("go.mod/go.sum (not tidy)")
    fi
    for dir in "${strategies[@]}"; do
        wasm="$dir/$(basename "$dir").wasm"
        build "$dir" "$work/out.wasm"
        cmp -s "$work/out.wasm" "$HERE/$wasm" || failed+=("$wasm")
    done
    # The sources themselves: formatted, and the SDK helpers' tests (run natively).
    while read -r file; do
        [[ -n "$file" ]] && failed+=("$file (run gofmt -w)")
    done < <(cd "$HERE" && gofmt -l sdk/*.go examples testdata)
    if ! (cd "$HERE" && go test ./sdk/... >"$work/test.log" 2>&1); then
        cat "$work/test.log" >&2
        failed+=("go test ./sdk/...")
    fi
    if ((${#failed[@]})); then
        echo "build.sh --check: not reproducible from source (run strategies/build.sh" \
            "--generate and commit the result, or fix the source):" >&2
        printf '  %s\n' "${failed[@]}" >&2
        exit 1
    fi
    echo "build.sh --check: bindings and ${#strategies[@]} .wasm files match a fresh build;" \
        "sources formatted, sdk tests pass"
    ;;
esac
