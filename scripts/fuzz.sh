#!/usr/bin/env bash
# Bounded fuzzing of every parser of untrusted input (see fuzz/fuzz_targets/). Installs
# cargo-fuzz when missing, builds all targets once (with debug assertions, so overflows panic),
# then runs each for SECONDS from its committed seeds (fuzz/seeds/<target>/). New inputs go to
# fuzz/corpus/<target>/ and crashes to fuzz/artifacts/<target>/, both ignored by git.
# Exits non-zero if any target crashed; the crash input is printed for a regression test.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (default 20 seconds, every target)
#        FUZZ_BUILD=quick scripts/fuzz.sh 10       (CI: a quicker build, see below)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-20}
shift || true

# cargo-fuzz needs nightly flags (-Z sanitizer); the stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

started=$(date +%s)
# FUZZ_BUILD=quick (CI) builds without optimisation and without AddressSanitizer: the cold build
# takes a third of the time, the code under test is safe Rust, and panics and overflows are still
# caught (debug assertions). The default is the thorough build: optimised, with ASan.
if [ "${FUZZ_BUILD:-thorough}" = quick ]; then
  build_flags=(--dev --sanitizer none)
  profile=debug
else
  build_flags=(--debug-assertions)
  profile=release
fi
# One build of the crate serves every target; `cargo fuzz build` takes at most one target name.
if [ $# -eq 0 ]; then
  cargo fuzz build "${build_flags[@]}"
else
  for target in "${targets[@]}"; do
    cargo fuzz build "${build_flags[@]}" "$target"
  done
fi
echo "built ${#targets[@]} targets in $(($(date +%s) - started))s"

bin_dir=target/$(rustc -vV | sed -n "s/^host: //p")/$profile
failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  echo "== $target: ${seconds}s"
  # The binaries run directly: `cargo fuzz run` would rebuild whenever the tree changed meanwhile.
  if ! "$bin_dir/$target" -artifact_prefix="artifacts/$target/" "corpus/$target" "${seeds[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 >"artifacts/$target.log" 2>&1; then
    failed+=("$target")
    echo "!! $target crashed:"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "artifacts/$target.log" | head -n 20 || true
  else
    grep -E '^stat::number_of_executed_units' "artifacts/$target.log" | sed "s/^/   /" || true
  fi
done

echo "fuzzed ${#targets[@]} targets for ${seconds}s each in $(($(date +%s) - started))s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
