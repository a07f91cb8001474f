#!/usr/bin/env bash
# Runs the examples of crates/mallocator that need no arguments and fails
# if any of them fails (non-zero exit, or no exit within the time limit).
#
#   scripts/run-examples.sh            # release build (default)
#   PROFILE=debug scripts/run-examples.sh
#   EXTRA_EXAMPLES="a b" scripts/run-examples.sh   # run more, by name
#
# The examples the README shows are always run. Examples that need a
# special runner (the leaky_* programs, compared with Valgrind by
# scripts/compare-valgrind.sh) are run by their own scripts; the ones
# that also run plainly with no arguments go in OTHER_EXAMPLES below.
# The programs the measurement scripts run are not examples: they are
# in crates/harness.
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=(ffi_strings jit leak_hunt plug_in)
OTHER_EXAMPLES=()
# shellcheck disable=SC2206 # word splitting of the list is intended
EXAMPLES+=("${OTHER_EXAMPLES[@]}" ${EXTRA_EXAMPLES:-})

PROFILE=${PROFILE:-release}
case "$PROFILE" in
  release) profile_flag=(--release) ;;
  debug) profile_flag=() ;;
  *) echo "run-examples: PROFILE must be release or debug, not '$PROFILE'" >&2; exit 2 ;;
esac
LIMIT=${EXAMPLE_TIMEOUT:-120}

dir=crates/mallocator/examples
for name in "${EXAMPLES[@]}"; do
  if [[ ! -e "$dir/$name.rs" && ! -e "$dir/$name/main.rs" ]]; then
    echo "run-examples: no example named '$name' in $dir" >&2
    exit 2
  fi
done

cargo build -q -p mallocator --examples "${profile_flag[@]}"

failed=()
for name in "${EXAMPLES[@]}"; do
  echo "==> example $name"
  start=$(date +%s)
  if timeout "$LIMIT" cargo run -q -p mallocator --example "$name" "${profile_flag[@]}" </dev/null; then
    echo "<== $name: ok ($(( $(date +%s) - start )) s)"
  else
    status=$?
    echo "<== $name: FAILED (exit $status)" >&2
    failed+=("$name")
  fi
done

# Examples present but not run here, so that none is forgotten silently.
not_run=()
for file in "$dir"/*.rs "$dir"/*/main.rs; do
  [[ -e "$file" ]] || continue
  name=${file#"$dir"/}; name=${name%/main.rs}; name=${name%.rs}
  [[ " ${EXAMPLES[*]} " == *" $name "* ]] || not_run+=("$name")
done
if ((${#not_run[@]})); then
  echo "not run by this script (need arguments or their own runner): ${not_run[*]}"
fi

ran=${#EXAMPLES[@]}
echo "examples: $((ran - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
  echo "failed examples: ${failed[*]}" >&2
  exit 1
fi
