#!/usr/bin/env bash
# Instructions per call of each contender of benches/ratios.rs, counted by callgrind, and
# their ratios. Deterministic, unlike wall time: use it to compare changes.
#
#   benches/callgrind.sh [N] [--sorted]     # N calls per contender (default 200)
#
# Each contender runs alone in its own process, N times inside `ratios::measured`, the one
# function callgrind collects in; instructions per call = collected instructions / N. The
# callgrind.out files are kept in target/callgrind/ for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
shift || true
extra=("$@")
export CARGO_PROFILE_BENCH_DEBUG=true
bin=$(cargo bench --bench ratios --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*ratios[^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the ratios bench" >&2; exit 1; }
out=target/callgrind
mkdir -p "$out"
declare -A ir
for name in limit straightforward Verifier::verify Verifier::verify_and_parse Verifier::process \
    verify_512 verify_8192 verify_65536; do
    file="$out/${name//::/_}${extra[*]:+-sorted}.out"
    valgrind --tool=callgrind --toggle-collect='ratios::measured' \
        --callgrind-out-file="$file" "$bin" --instructions "$name" "$n" "${extra[@]}" \
        >/dev/null 2>&1
    total=$(sed -n 's/^summary: *//p' "$file")
    ir[$name]=$((total / n))
    printf '%-28s %9d instructions/call\n' "$name" "${ir[$name]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "Verifier::verify / limit            = $(ratio "${ir[Verifier::verify]}" "${ir[limit]}")  (goal <= 1.3)"
echo "Verifier::verify_and_parse / limit  = $(ratio "${ir[Verifier::verify_and_parse]}" "${ir[limit]}")  (goal <= 1.6)"
echo "straightforward / verify_and_parse  = $(ratio "${ir[straightforward]}" "${ir[Verifier::verify_and_parse]}")  (goal >= 2.5)"
