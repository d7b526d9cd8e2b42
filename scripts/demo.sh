#!/usr/bin/env bash
# The demo: start the bundled simulator on a free port with the example jobs preloaded, watch
# them with the default 3-second cadence, then show the manifest and the saved files.
set -euo pipefail
cd "$(dirname "$0")/.."

out=demo-out
rm -rf "$out"
mkdir -p "$out"

# One set of exports serves both the simulator and the watcher, as it would for real.
export HUAWEICLOUD_SDK_AK=DEMOACCESSKEY0000000
export HUAWEICLOUD_SDK_SK=demo-secret-key-not-for-production-0000
export HUAWEICLOUD_SDK_PROJECT_ID=0123456789abcdef0123456789abcdef

watcher sim --preload jobs.example.jsonl --time-scale 0.25 >"$out/sim.url" 2>"$out/sim.log" &
sim_pid=$!
trap 'kill -INT $sim_pid 2>/dev/null; wait $sim_pid 2>/dev/null || true' EXIT

url=""
for _ in $(seq 100); do  # up to 10 s for the simulator's first line
  url=$(head -n 1 "$out/sim.url" 2>/dev/null || true)
  [ -n "$url" ] && break
  kill -0 $sim_pid 2>/dev/null || { cat "$out/sim.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "demo: the simulator did not start" >&2; cat "$out/sim.log" >&2; exit 1; }
echo "== simulator at $url"

echo "== watcher run jobs.example.jsonl --endpoint $url --out $out"
status=0
watcher run jobs.example.jsonl --endpoint "$url" --out "$out" --log-format console --log-level warning || status=$?

echo
echo "== $out/manifest.jsonl (job_id, status, state, files, polls, elapsed_s, error)"
python3 - "$out/manifest.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    err = r["error"]["code"] + ": " + r["error"]["message"] if r["error"] else ""
    files = ",".join(sorted(r["files"]))
    print(f'{str(r["job_id"]):36} {r["status"]:8} {str(r["state"]):8} files={files:16} polls={r["polls"]:<3} {r["elapsed_s"]}s {err}')
PY
echo
echo "== files saved in $out"
# awk reads all of its input (no `head` exiting early): under pipefail a reader that stops first
# kills the writer with SIGPIPE (exit 141) now and then, failing the demo at random.
ls -l "$out" | awk '!/manifest|sim\./ && ++n <= 12'
echo "... $(ls "$out" | awk '!/manifest|sim\./ { n++ } END { print n + 0 }') files in all"
echo
echo "== watcher exit code: $status (0: every job succeeded; 1: some did not, as the example intends)"
