#!/usr/bin/env bash
# Builds hiber and shows the main job: launch a counter, checkpoint it,
# kill it (and its coordinator) with SIGKILL, restart it from the image.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "demo: Rust is needed: https://rustup.rs (curl https://sh.rustup.rs -sSf | sh)" >&2
    exit 1
fi
cargo build --release
hiber=$PWD/target/release/hiber
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O1 -o "$work/counter" examples/counter.c
cd "$work"
export HIBER_COORD=127.0.0.1:${HIBER_DEMO_PORT:-7779} HIBER_COOKIE=$work/cookie

echo "== launch: a counter under hiber (a coordinator starts on $HIBER_COORD)"
"$hiber" launch ./counter 30 &
sleep 2
echo "== checkpoint"
"$hiber" checkpoint
sleep 1
echo "== kill -9 the counter and the coordinator"
pkill -9 -f "$work/counter|./counter 30" || true
pkill -9 -f "hiber coordinator.*--port ${HIBER_COORD##*:}" || true
wait 2>/dev/null || true
echo "== restart from the image: the count goes on from the checkpoint"
"$hiber" restart ckpt_counter_*.hiber
