#!/usr/bin/env bash
# Builds every example plugin into out/NAME/ — NAME.wasm and its plugin.toml with the module's
# sha256 filled in — ready to copy into an installation's plugins/ folder.
#   Rust (rust-score): cargo + the wasm32-unknown-unknown target (rustup), or Debian's rustc-web
#                      where rustup cannot give it (CRMKIT_WASM_TOOLCHAIN=rustup|debian chooses)
#   C (c-guard, c-loyalty): clang + wasm-ld (Debian: apt-get install clang lld)
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

# The toolchain rust-score is built with: "rustup" (its stable toolchain with the
# wasm32-unknown-unknown target, added when missing), "debian" (Debian's rustc-web, see
# build_rust_debian) or, unset, rustup's when it has or can add the target, else the PATH
# toolchain when it has the target's standard library, else Debian's.
toolchain=${CRMKIT_WASM_TOOLCHAIN:-}

build_rust() {
  local how=$toolchain
  case $how in
    rustup | debian) ;;
    "")
      if command -v rustup >/dev/null; then
        if rustup target list --installed | grep -qx wasm32-unknown-unknown ||
          rustup target add wasm32-unknown-unknown; then
          how=rustup
        else
          echo "rust-score: rustup could not add the wasm32-unknown-unknown target; building with Debian's rustc-web" >&2
          how=debian
        fi
      elif command -v rustc >/dev/null &&
        [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown/lib" ]; then
        how=path
      else
        how=debian
      fi
      ;;
    *) fail "CRMKIT_WASM_TOOLCHAIN is \"$how\"; it is rustup, debian or unset (either, rustup's first)" ;;
  esac
  if [ "$how" = debian ]; then
    build_rust_debian
    return
  fi
  if [ "$how" = rustup ]; then
    command -v rustup >/dev/null || fail "rust-score: CRMKIT_WASM_TOOLCHAIN=rustup, but rustup is not installed"
    rustup target list --installed | grep -qx wasm32-unknown-unknown ||
      rustup target add wasm32-unknown-unknown ||
      fail "rust-score: rustup could not add the wasm32-unknown-unknown target (CRMKIT_WASM_TOOLCHAIN=debian builds with Debian's rustc-web instead)"
  fi
  command -v cargo >/dev/null || fail "rust-score: cargo is not installed"
  (cd "$here/rust-score" && CARGO_TARGET_DIR="$target" cargo build --release --locked \
    --target wasm32-unknown-unknown) || fail "rust-score: cargo build failed"
  install_plugin rust_score "$target/wasm32-unknown-unknown/release/rust_score.wasm" \
    "$here/rust-score/plugin.toml"
  local by="rustup's"
  [ "$how" = rustup ] || by="the PATH's"
  echo "rust-score: built by $by $(rustc --version) with its wasm32-unknown-unknown standard library"
}

# Debian 12 has no wasm32 standard library packaged, but rustc-web (Rust 1.85 from Debian's
# own LLVM) with rust-web-src (the standard library's source at the sysroot,
# /usr/lib/rustlib/src/rust) compiles core and alloc for the target itself (-Zbuild-std, which
# RUSTC_BOOTSTRAP=1 unlocks on a stable compiler), fetching their few crates from crates.io;
# wasm-ld-N from lld-N links, N the major version of the LLVM rustc-web is built on. The
# packages are installed when missing and this runs as root: rustc-web, cargo-web and
# rust-web-src at one version, with that lld, in one apt transaction. Debian's cargo and rustc
# (/usr/bin) are named by path, as rustup's usually come first on PATH.
build_rust_debian() {
  local packages=(rustc-web cargo-web rust-web-src)
  local missing=0 p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing=1
  done
  local llvm=""
  if [ $missing = 0 ]; then
    llvm=$(/usr/bin/rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    command -v "wasm-ld-$llvm" >/dev/null || missing=1
  fi
  if [ $missing = 1 ]; then
    command -v apt-get >/dev/null || fail "rust-score: Debian's toolchain needs apt-get (packages ${packages[*]} and lld-N)"
    [ "$(id -u)" -ne 0 ] || apt-get update -qq >&2 || fail "rust-score: apt-get update failed"
    local version
    version=$(apt-cache policy rustc-web 2>/dev/null | sed -n 's/^ *Candidate: //p')
    [ -n "$version" ] && [ "$version" != "(none)" ] ||
      fail "rust-score: apt knows no rustc-web (Debian 12 or later, main)"
    # libstd-rust-web-X.Y depends on the libllvmN its rustc is built on.
    local series
    series=$(echo "$version" | sed 's/^\([0-9]*\.[0-9]*\).*/\1/')
    llvm=$(apt-cache depends "libstd-rust-web-$series" | sed -n 's/.*Depends: libllvm\([0-9]*\)$/\1/p' | head -1)
    [ -n "$llvm" ] || fail "rust-score: cannot tell which LLVM rustc-web $version is built on (apt-cache depends libstd-rust-web-$series)"
    local install=(apt-get install -y -qq rustc-web="$version" cargo-web="$version" rust-web-src="$version" "lld-$llvm")
    [ "$(id -u)" -eq 0 ] || fail "rust-score: Debian's toolchain is not installed; as root: ${install[*]}"
    echo "rust-score: installing ${install[*]:4}"
    DEBIAN_FRONTEND=noninteractive "${install[@]}" >&2 || fail "rust-score: ${install[*]} failed"
  fi
  local rustc_v src_v
  rustc_v=$(dpkg-query -W -f='${Version}' rustc-web)
  src_v=$(dpkg-query -W -f='${Version}' rust-web-src)
  [ "$rustc_v" = "$src_v" ] ||
    fail "rust-score: rustc-web $rustc_v and rust-web-src $src_v differ; install both at one version"
  [ -f /usr/lib/rustlib/src/rust/library/Cargo.lock ] ||
    fail "rust-score: rust-web-src left no /usr/lib/rustlib/src/rust/library/Cargo.lock, which -Zbuild-std needs"
  (cd "$here/rust-score" && RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="wasm-ld-$llvm" CARGO_TARGET_DIR="$target/debian" \
    /usr/bin/cargo build --release --locked --target wasm32-unknown-unknown \
    -Zbuild-std=core,alloc) || fail "rust-score: cargo build with Debian's rustc-web $rustc_v failed"
  install_plugin rust_score "$target/debian/wasm32-unknown-unknown/release/rust_score.wasm" \
    "$here/rust-score/plugin.toml"
  echo "rust-score: built by Debian's $(/usr/bin/rustc --version) (rustc-web $rustc_v, -Zbuild-std=core,alloc) linked by wasm-ld-$llvm"
}

build_c() {
  command -v clang >/dev/null || fail "c examples: clang is not installed (apt-get install clang lld)"
  mkdir -p "$target/c"
  local example name source
  for example in c-guard:guard.c c-loyalty:loyalty.c; do
    name=${example%%:*}
    source=${example#*:}
    clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o "$target/c/${name//-/_}.wasm" \
      "$here/$name/$source" ||
      fail "$name: clang failed (wasm32 needs wasm-ld: apt-get install lld)"
    install_plugin "${name//-/_}" "$target/c/${name//-/_}.wasm" "$here/$name/plugin.toml"
  done
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
