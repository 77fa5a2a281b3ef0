#!/bin/sh
# Installs the build into a temporary prefix, builds tests/install/ (an engine's own
# project: C++ via find_package(tierkv), C via pkg-config and via the static archive)
# against that prefix only, and runs the programs against a real tierkvd.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR TIERKVD
set -eu
build=$1 src=$2 tierkvd=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/tierkv-install-test.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "install_test: $*" >&2; [ -f "$work/d/tierkvd.log" ] && tail -20 "$work/d/tierkvd.log" >&2; exit 1; }

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || fail "cmake --install failed"
for f in bin/tierkvd bin/tierkvctl lib/libtierkv.a include/tierkv/client.h include/tierkv/tierkv.h \
         include/tierkv/status.h lib/cmake/tierkv/tierkvConfig.cmake lib/cmake/tierkv/tierkvConfigVersion.cmake \
         lib/cmake/tierkv/tierkvTargets.cmake lib/pkgconfig/tierkv.pc share/tierkv/tierkvd.toml; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
so=$(ls "$prefix"/lib/libtierkv.so.*.*.*) || fail "libtierkv.so not installed"
soname=$(objdump -p "$so" | awk '/SONAME/ {print $2}')
[ "$soname" = libtierkv.so.0 ] || fail "SONAME is '$soname'"
[ -e "$prefix/lib/$soname" ] && [ -e "$prefix/lib/libtierkv.so" ] || fail "libtierkv.so links missing"
# The .so exports the C ABI and the public C++ API, nothing internal.
leaked=$(nm -DC --defined-only "$so" | grep -E 'tierkv::(wire|dp|kernels|internal)::|nlohmann|Impl::| cuda' || true)
[ -z "$leaked" ] || fail "libtierkv.so exports internals: $(echo "$leaked" | head -5)"
nm -D --defined-only "$so" | grep -q ' T tierkv_retrieve$' || fail "tierkv_retrieve not exported"

# The engine's project: a copy outside the tree, only the prefix on the search paths.
cp -r "$src/tests/install" "$work/src"
rm -f "$work/src/install_test.sh"
PKG_CONFIG_PATH=$prefix/lib/pkgconfig cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure failed"; }
cmake --build "$work/build" -j2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build failed"; }
if grep -q -- "-I$src" "$work/build/compile_commands.json" 2>/dev/null; then fail "include path into the source tree"; fi

# A real tierkvd with a temporary config (small tiers, metrics on a free port).
mkdir -p "$work/d"
cat >"$work/d/tierkvd.toml" <<CONF
[daemon]
data_dir = "$work/d/data"
socket_path = "$work/d/tierkvd.sock"
[metrics]
listen = "127.0.0.1:0"
[storage]
gpu_bytes = 4194304
host_bytes = 8388608
disk_bytes = 16777216
CONF
"$tierkvd" --config "$work/d/tierkvd.toml" >"$work/d/tierkvd.log" 2>&1 &
pid=$!
i=0
until "$prefix/bin/tierkvctl" --socket "$work/d/tierkvd.sock" ping >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -lt 200 ] || fail "tierkvd did not answer"
  kill -0 "$pid" 2>/dev/null || fail "tierkvd exited"
  sleep 0.1
done

"$work/build/engine_cpp" "$work/d/tierkvd.sock" from_cpp || fail "engine_cpp failed"
"$work/build/engine_c" "$work/d/tierkvd.sock" from_c || fail "engine_c failed"
"$work/build/engine_c_static" "$work/d/tierkvd.sock" from_c_static || fail "engine_c_static failed"
# The README's plain pkg-config command line.
cc -std=c11 -o "$work/engine_cc" "$work/src/engine.c" $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs tierkv) \
  || fail "cc with pkg-config failed"
LD_LIBRARY_PATH=$prefix/lib "$work/engine_cc" "$work/d/tierkvd.sock" from_cc || fail "engine_cc failed"
# The programs resolve the installed libtierkv.so, not the build tree's.
ldd "$work/build/engine_cpp" | grep -q "$prefix/lib/libtierkv.so.0" || fail "engine_cpp does not use the installed .so"
ldd "$work/build/engine_c_static" | grep -q libtierkv && fail "engine_c_static links libtierkv.so"
"$prefix/bin/tierkvctl" --socket "$work/d/tierkvd.sock" namespaces | grep -q from_cc || fail "namespaces missing"
echo "install_test: ok"
