#!/usr/bin/env bash
# Publishing benchmark (issue: the build pipeline at scale).
#
# ORGS orgs x 3 platforms x MIB MiB payloads: how long `depot release publish` takes beside one pass
# of `openssl dgst -sha256` over the three payloads (the floor), the marginal time and disk per extra
# package (publish with ORGS orgs against ORGS/10 orgs), and a naive `zip` repack of one package.
#   bash benches/build.sh                     # 300 orgs, 256 MiB payloads (the design target)
#   ORGS=50 MIB=64 bash benches/build.sh      # smaller
#   DEPOT_BENCH_SMOKE=1 bash benches/build.sh # what CI runs (DEPOT_BIN=path skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ORGS=${ORGS:-300}
MIB=${MIB:-256}
if [ -n "${DEPOT_BENCH_SMOKE:-}" ]; then ORGS=20; MIB=8; fi
SMALL=$(( ORGS / 10 > 0 ? ORGS / 10 : 1 ))

for tool in openssl zip unzip python3; do
  command -v "$tool" >/dev/null || { echo "benches/build.sh needs $tool" >&2; exit 1; }
done
if [ -n "${DEPOT_BIN:-}" ]; then
  depot=$(cd "$(dirname "$DEPOT_BIN")" && pwd)/$(basename "$DEPOT_BIN")
else
  cargo build --release --quiet
  depot=$PWD/target/release/depot
fi

work=$(mktemp -d /tmp/depot-bench-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

echo "payloads: 3 x ${MIB} MiB; orgs: ${ORGS} (and ${SMALL} for the marginal cost)"
mkdir -p "$work/payloads"
for p in windows-x86_64:msi macos-aarch64:dmg linux-x86_64:tgz; do
  head -c $((MIB * 1024 * 1024)) /dev/urandom > "$work/payloads/client-1.0.0-${p%%:*}.${p##*:}"
done
payload_args=()
for f in "$work"/payloads/*; do
  base=$(basename "$f"); platform=${base#client-1.0.0-}; platform=${platform%.*}
  payload_args+=(--payload "$platform=$f")
done
cat "$work"/payloads/* > /dev/null   # warm the page cache for every contender alike

# The floor: one SHA-256 pass over the three payloads.
t0=$(now); openssl dgst -sha256 "$work"/payloads/* > /dev/null; t1=$(now)
openssl_s=$(elapsed "$t0" "$t1")

setup() { # dir orgs
  mkdir -p "$1"
  (cd "$1" && "$depot" init > /dev/null
   for i in $(seq 1 "$2"); do "$depot" org add "dept$i" --name "Department $i" --seats 100 > /dev/null; done)
}
publish() { # dir -> prints seconds of add and of publish
  (cd "$1"
   a0=$(now); "$depot" release add 1.0.0 "${payload_args[@]}" > /dev/null; a1=$(now)
   p0=$(now); "$depot" release publish 1.0.0 --channel stable 2> /dev/null > /dev/null; p1=$(now)
   echo "$(elapsed "$a0" "$a1") $(elapsed "$p0" "$p1")")
}
blob_bytes() { du -sb "$1/artifacts" | cut -f1; }

setup "$work/big" "$ORGS"
setup "$work/small" "$SMALL"
read -r add_big publish_big < <(publish "$work/big")
read -r add_small publish_small < <(publish "$work/small")
packages_big=$(( (ORGS + 1) * 3 ))      # the orgs plus `default`
packages_small=$(( (SMALL + 1) * 3 ))
disk_big=$(blob_bytes "$work/big"); disk_small=$(blob_bytes "$work/small")

# A naive build of one package: unpack one of ours and zip it again with the stock tool.
(cd "$work/big" && "$depot" export --org dept1 --release 1.0.0 --out "$work/export" > /dev/null)
mkdir -p "$work/naive" && (cd "$work/naive" && unzip -q "$work/export/dept1-1.0.0-linux-x86_64.zip")
t0=$(now); (cd "$work/naive" && zip -q -r -X "$work/naive.zip" .); t1=$(now)
naive_s=$(elapsed "$t0" "$t1")
(cd "$work/big" && "$depot" verify > /dev/null)

python3 - "$openssl_s" "$add_big" "$publish_big" "$publish_small" "$packages_big" "$packages_small" \
  "$disk_big" "$disk_small" "$naive_s" "$ORGS" "$MIB" <<'PY'
import sys
openssl, add, big, small, nbig, nsmall, dbig, dsmall, naive, orgs, mib = map(float, sys.argv[1:])
marginal_ms = (big - small) / (nbig - nsmall) * 1000
marginal_kib = (dbig - dsmall) / (nbig - nsmall) / 1024
print(f"openssl dgst -sha256, 3 payloads once : {openssl:8.3f} s")
print(f"depot release add (ingest)            : {add:8.3f} s   ({add / openssl:.2f}x openssl)")
print(f"depot release publish, {int(nbig)} packages : {big:8.3f} s   ({big / openssl:.2f}x openssl; target < 4x)")
print(f"depot release publish, {int(nsmall)} packages  : {small:8.3f} s")
print(f"marginal cost per extra package       : {marginal_ms:8.3f} ms  (target <= 5 ms)")
print(f"marginal disk per extra package       : {marginal_kib:8.1f} KiB (target <= 64 KiB)")
print(f"naive zip repack of one package       : {naive:8.3f} s   ({naive * 1000 / max(marginal_ms, 1e-6):.0f}x depot's marginal package)")
print(f"naive repack of all {int(nbig)} packages (projected): {naive * nbig:8.1f} s ({naive * nbig / big:.0f}x depot's publish)")
PY
