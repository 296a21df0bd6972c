#!/usr/bin/env bash
# A Windows toolchain for this Debian 12 machine, from Debian's own packages (no rustup target
# can be downloaded here): Debian's rustc-web (1.96) with its full standard-library sources, so
# that cargo builds std for Windows itself (-Zbuild-std); MinGW-w64 to link; Wine to run the
# programs and tests. Nothing replaces the default toolchain: the compiler is unpacked under
# $WINTC and used through the environment that env.sh sets.
#
#   .ci/windows/toolchain.sh            # check only (about 150 MB, 15 s)
#   WITH_RUN=1 .ci/windows/toolchain.sh # also link (MinGW) and run (Wine): ~350 MB
#   . /opt/moxd-wintc/env.sh
#   cargo check -Zbuild-std --target x86_64-pc-windows-gnu -p ipc
#   cargo test  -Zbuild-std --target x86_64-pc-windows-gnu -p ipc   # runs the tests under Wine
#
# The same compiler checks other targets whose std is not installed, e.g.
#   cargo check -Zbuild-std --target x86_64-unknown-openbsd
#   cargo check -Zbuild-std --target x86_64-unknown-freebsd
#
# Notes: RUSTC_BOOTSTRAP=1 (needed for -Zbuild-std) is set in env.sh only; use a separate
# CARGO_TARGET_DIR, since this compiler is not the default one. Wine 8 lacks
# bcryptprimitives.dll (ProcessPrng), which Rust's std needs since 1.78: a ten-line stand-in
# is built here and placed in the Wine prefix.
set -euo pipefail
WINTC=${WINTC:-/opt/moxd-wintc}
WITH_RUN=${WITH_RUN:-0}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WINTC/debs" "$WINTC/root"
cd "$WINTC/debs"
[ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ] || apt-get update -qq
pkgs=(rustc-web cargo-web libstd-rust-web-1.96 libstd-rust-web-dev rust-web-src libllvm22
      libgit2-1.5 libhttp-parser2.9 libmbedcrypto7 libmbedtls14 libmbedx509-1
      binutils-mingw-w64-x86-64)
if [ "$WITH_RUN" = 1 ]; then
  pkgs+=(gcc-mingw-w64-base mingw-w64-common mingw-w64-x86-64-dev
         gcc-mingw-w64-x86-64-win32-runtime gcc-mingw-w64-x86-64-win32)
fi
if ! apt-get download "${pkgs[@]}" >download.log 2>&1; then
  apt-get update -qq && apt-get download "${pkgs[@]}" >download.log 2>&1 \
    || { tail -3 download.log; echo "toolchain.sh: could not download the packages" >&2; exit 1; }
fi
for f in *.deb; do dpkg-deb -x "$f" "$WINTC/root"; done

cat > "$WINTC/env.sh" <<ENV
# Source me: Debian's rustc-web with std sources, for -Zbuild-std cross builds (see toolchain.sh).
export PATH=$WINTC/root/usr/bin:\$PATH
export LD_LIBRARY_PATH=$WINTC/root/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export RUSTC=$WINTC/root/usr/bin/rustc RUSTDOC=$WINTC/root/usr/bin/rustdoc
export CARGO=$WINTC/root/usr/bin/cargo
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc-win32
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc-win32 AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$WINTC/wine-run
export WINEPREFIX=$WINTC/wineprefix WINEDEBUG=-all
unset RUSTUP_TOOLCHAIN
ENV

if [ "$WITH_RUN" = 1 ]; then
  command -v wine64 >/dev/null || [ -x /usr/lib/wine/wine64 ] || \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wine64 >"$WINTC/wine-install.log" 2>&1
  export PATH=$WINTC/root/usr/bin:$PATH LD_LIBRARY_PATH=$WINTC/root/usr/lib/x86_64-linux-gnu
  x86_64-w64-mingw32-gcc-win32 -O2 -shared -o "$WINTC/bcryptprimitives.dll" \
    "$here/bcryptprimitives.c" -ladvapi32
  export WINEPREFIX=$WINTC/wineprefix WINEDEBUG=-all
  /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1 || true
  cp "$WINTC/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
  printf '#!/bin/sh\nexec /usr/lib/wine/wine64 "$@"\n' >"$WINTC/wine-run"; chmod +x "$WINTC/wine-run"
fi
. "$WINTC/env.sh"
rustc -V; cargo -V
echo "ready: . $WINTC/env.sh"
