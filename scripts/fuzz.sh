#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after the other, FUZZ_SECONDS each
# (default 60), under nice; needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). docs/FUZZING.md explains the
# targets and the figures.
#
#   scripts/fuzz.sh                        # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh profiles agent_answer
#   FUZZ_RUNS=10000000 scripts/fuzz.sh form   # a number of executions instead
#   FUZZ_UPDATE_CORPUS=1 scripts/fuzz.sh   # merge what was found into the
#                                          # committed corpora (minimised)
#
# Inputs: <crate>/fuzz/seeds/<target> (realistic inputs, kept as they are)
# and <crate>/fuzz/corpus/<target> (minimised finds). New inputs go to
# target/fuzz-corpus/<target> (the committed corpus is read only unless
# FUZZ_UPDATE_CORPUS=1); a crash leaves its input in
# <crate>/fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-}
# crate directory (holding fuzz/) and target name
all_targets=(protocol:decode frontend:form frontend:profiles frontend:agent_answer)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing (cargo install cargo-fuzz --locked)" >&2
    exit 2
fi

selected=()
for spec in "${all_targets[@]}"; do
    if [ $# -eq 0 ]; then
        selected+=("$spec")
    else
        for want in "$@"; do
            [ "${spec#*:}" = "$want" ] && selected+=("$spec")
        done
    fi
done
if [ ${#selected[@]} -eq 0 ]; then
    echo "fuzz.sh: no such target: $* (known: ${all_targets[*]#*:})" >&2
    exit 2
fi

if [ -n "$runs" ]; then
    limit=(-runs="$runs")
else
    limit=(-max_total_time="$seconds")
fi

summary=()
for spec in "${selected[@]}"; do
    crate=${spec%%:*}
    target=${spec#*:}
    scratch=$root/target/fuzz-corpus/$target
    mkdir -p "$scratch"
    log=$root/target/fuzz-corpus/$target.log
    # Inputs past 1 KiB (more profiles, more agent lines) only repeat what
    # smaller ones cover, at a fraction of the speed.
    extra=(-max_len=1024)
    echo "== $target (${limit[*]} ${extra[*]})"
    # -s none: the code under test is safe Rust; without AddressSanitizer
    # the targets run about twice as fast. --no-trace-compares: comparison
    # tracing took half the profiles target's time; the seed corpora carry
    # the keywords it would find. Debug assertions and overflow checks stay
    # on (cargo fuzz's default build).
    if ! (cd "$crate" && nice -n 10 cargo +nightly fuzz run -s none --no-trace-compares "$target" \
        "$scratch" "fuzz/corpus/$target" "fuzz/seeds/$target" -- "${limit[@]}" "${extra[@]}" -print_final_stats=1) 2>&1 | tee "$log"; then
        echo "fuzz.sh: $target FAILED; the input is in $crate/fuzz/artifacts/$target/" >&2
        exit 1
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    execs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}')
    summary+=("$target executions=$execs $(echo "$done_line" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+ .*exec/s: [0-9]+')")
    if [ "${FUZZ_UPDATE_CORPUS:-0}" = 1 ]; then
        # `cargo fuzz cmin` with -use_counters=0: every covered edge kept,
        # hit counts ignored (a few hundred files instead of thousands).
        merged=$root/target/fuzz-corpus/$target.merged
        rm -rf "$merged" && mkdir -p "$merged"
        (cd "$crate" && nice -n 10 cargo +nightly fuzz run -s none --no-trace-compares "$target" \
            "$merged" "fuzz/corpus/$target" "$scratch" "fuzz/seeds/$target" -- -merge=1 -use_counters=0 -max_len=1024)
        rm -rf "$crate/fuzz/corpus/$target"
        mv "$merged" "$crate/fuzz/corpus/$target"
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
