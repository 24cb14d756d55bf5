#!/usr/bin/env bash
# Builds every example plugin into out/NAME/ — NAME.wasm and its plugin.toml with the module's
# sha256 filled in — ready to copy into an installation's plugins/ folder.
#   Rust (rust-score): cargo + the wasm32-unknown-unknown target
#   C (c-guard):       clang + wasm-ld (Debian: apt-get install clang lld)
#   WAT (wat-guard):   wat2wasm (Debian: apt-get install wabt) when installed; the tests
#                      compile the .wat themselves
# Usage: plugins/examples/build.sh [rust|c|wat]...   (all by default)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/out"
target="$here/target"
which=("$@")
[ ${#which[@]} -gt 0 ] || which=(rust c wat)

fail() { echo "build.sh: $*" >&2; exit 1; }

# out/NAME/{NAME.wasm,plugin.toml} from a built module and the example's manifest.
install_plugin() {
  local name=$1 wasm=$2 manifest=$3
  mkdir -p "$out/$name"
  cp "$wasm" "$out/$name/$name.wasm"
  local sha
  sha=$(sha256sum "$out/$name/$name.wasm" | cut -d' ' -f1)
  sed "s/^sha256 = .*/sha256 = \"$sha\"/" "$manifest" >"$out/$name/plugin.toml"
  echo "built $out/$name/$name.wasm ($(wc -c <"$out/$name/$name.wasm") bytes, sha256 $sha)"
}

build_rust() {
  command -v cargo >/dev/null || fail "rust-score: cargo is not installed"
  if command -v rustup >/dev/null; then
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
      rustup target add wasm32-unknown-unknown || fail "rust-score: rustup could not add the \
wasm32-unknown-unknown target. Without it, Debian's toolchain builds the same crate: apt-get \
install rustc-web rust-web-src lld (matching versions), then in plugins/examples/rust-score: \
RUSTC_BOOTSTRAP=1 cargo build --release --target wasm32-unknown-unknown -Zbuild-std=core,alloc"
    fi
  fi
  (cd "$here/rust-score" && CARGO_TARGET_DIR="$target" cargo build --release --locked \
    --target wasm32-unknown-unknown) ||
    fail "rust-score: cargo build failed (the wasm32-unknown-unknown target: rustup target add \
wasm32-unknown-unknown; or Debian's rustc-web + rust-web-src with RUSTC_BOOTSTRAP=1 and \
-Zbuild-std=core,alloc)"
  install_plugin rust_score "$target/wasm32-unknown-unknown/release/rust_score.wasm" \
    "$here/rust-score/plugin.toml"
}

build_c() {
  command -v clang >/dev/null || fail "c-guard: clang is not installed (apt-get install clang lld)"
  mkdir -p "$target/c"
  clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o "$target/c/c_guard.wasm" \
    "$here/c-guard/guard.c" ||
    fail "c-guard: clang failed (wasm32 needs wasm-ld: apt-get install lld)"
  install_plugin c_guard "$target/c/c_guard.wasm" "$here/c-guard/plugin.toml"
}

build_wat() {
  if ! command -v wat2wasm >/dev/null; then
    echo "wat-guard: wat2wasm is not installed (apt-get install wabt); left to the tests, which compile it"
    return
  fi
  mkdir -p "$target/wat"
  wat2wasm "$here/wat-guard/wat_guard.wat" -o "$target/wat/wat_guard.wasm"
  install_plugin wat_guard "$target/wat/wat_guard.wasm" "$here/wat-guard/plugin.toml"
}

for w in "${which[@]}"; do
  case $w in
    rust) build_rust ;;
    c) build_c ;;
    wat) build_wat ;;
    *) fail "unknown example kind \"$w\" (rust, c or wat)" ;;
  esac
done
