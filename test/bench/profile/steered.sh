#!/bin/bash
# steered.sh DIR [REPS] [PATHS]: a system-wide cpu-clock profile (this VM has
# no PMU) of rate-only runs of direct and the given paths, interleaved by
# the benchmark itself; bin/bench -marks cuts it per run. Then:
#   python3 test/bench/profile/steered.py DIR[,DIR2...]
# Needs root, perf (apt-get install linux-perf) and `make build` plus
# `go build -o bin/bench ./test/bench`.
set -euo pipefail
dir=$1 reps=${2:-6} paths=${3:-tcpshift-lookup,tcpshift-connect}
mkdir -p "$dir"
rm -f "$dir/marks"
perf record -q -k CLOCK_MONOTONIC -a -e cpu-clock -F 2000 -o "$dir/perf.data" -- \
	bin/bench -rate-only -paths "$paths" -reps "$reps" -rate-time 3s -settle 2s \
	-marks "$dir/marks" -out "$dir/out" >"$dir/bench.out" 2>"$dir/bench.err"
