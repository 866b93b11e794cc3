#!/usr/bin/env bash
# cnn beside candle, tract and onnxruntime on the six workloads, 1 and 2 threads.
# Prints a Markdown table of median ms per batch (ratio to cnn in brackets),
# for cnn and onnxruntime the lowest of ROUNDS (default 3) rounds.
set -euo pipefail
cd "$(dirname "$0")"
dir=target/peers
rm -rf "$dir" && mkdir -p "$dir"
pip install --quiet numpy safetensors onnx onnxruntime
cargo build --release
RAYON_NUM_THREADS=1 ./target/release/cnn-peers cnn "$dir"
RAYON_NUM_THREADS=2 ./target/release/cnn-peers cnn "$dir"
python3 peers.py prepare "$dir"
python3 peers.py ort "$dir" 1
python3 peers.py ort "$dir" 2
# More rounds of cnn and onnxruntime in turn; the table keeps each one's
# lowest median, so that a slow minute of the machine does not decide.
for _ in $(seq 2 "${ROUNDS:-3}"); do
    RAYON_NUM_THREADS=1 ./target/release/cnn-peers cnn "$dir"
    RAYON_NUM_THREADS=2 ./target/release/cnn-peers cnn "$dir"
    python3 peers.py ort "$dir" 1
    python3 peers.py ort "$dir" 2
done
RAYON_NUM_THREADS=1 ./target/release/cnn-peers peers "$dir"
RAYON_NUM_THREADS=2 ./target/release/cnn-peers peers "$dir"
python3 peers.py table "$dir"
