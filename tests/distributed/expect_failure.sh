#!/usr/bin/env bash
# Runs a command that must fail: asserts a non-zero exit within MAX_SECONDS, output matching
# PATTERN (extended regex), and no line matching "survived" (no rank may get past the fault).
# Usage: expect_failure.sh MAX_SECONDS PATTERN command [args...]
set -u
max=$1
pattern=$2
shift 2
start=$(date +%s.%N)
out=$(timeout --kill-after=5 $((max + 60)) "$@" 2>&1)
rc=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
echo "$out"
echo "--- exit status $rc after ${elapsed} s (limit ${max} s)"
fail() { echo "EXPECT_FAILURE FAILED: $*"; exit 1; }
[ "$rc" -ne 0 ] || fail "the command exited 0"
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "the command hung and was killed"
awk -v e="$elapsed" -v m="$max" 'BEGIN { exit !(e <= m) }' || fail "took ${elapsed} s, more than ${max} s"
grep -Eq -- "$pattern" <<<"$out" || fail "no output line matches: $pattern"
if grep -q "survived" <<<"$out"; then fail "a rank got past the fault"; fi
echo "EXPECT_FAILURE OK"
