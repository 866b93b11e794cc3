#!/usr/bin/env bash
# cnn beside PyTorch, onnxruntime, tract and candle on the six workloads, 1 and 2 threads.
# Prints a Markdown table of median ms per batch (ratio to cnn in brackets),
# for cnn, onnxruntime and PyTorch the lowest of ROUNDS (default 3) rounds, with the spread.
set -euo pipefail
cd "$(dirname "$0")"
dir=target/peers
rm -rf "$dir" && mkdir -p "$dir"
pip install --quiet numpy safetensors onnx onnxruntime
# PyTorch from PyPI is a CUDA build of about 5 GB; it runs on the CPU here.
python3 -c "import torch" 2>/dev/null || pip install --quiet torch
cargo build --release
RAYON_NUM_THREADS=1 ./target/release/cnn-peers cnn "$dir"
RAYON_NUM_THREADS=2 ./target/release/cnn-peers cnn "$dir"
python3 peers.py prepare "$dir"
python3 peers.py ort "$dir" 1
python3 peers.py ort "$dir" 2
python3 peers.py torch "$dir" 1
python3 peers.py torch "$dir" 2
# More rounds of cnn, onnxruntime and PyTorch in turn; the table keeps each one's
# lowest median, so that a slow minute of the machine does not decide.
for _ in $(seq 2 "${ROUNDS:-3}"); do
    RAYON_NUM_THREADS=1 ./target/release/cnn-peers cnn "$dir"
    RAYON_NUM_THREADS=2 ./target/release/cnn-peers cnn "$dir"
    python3 peers.py ort "$dir" 1
    python3 peers.py ort "$dir" 2
    python3 peers.py torch "$dir" 1
    python3 peers.py torch "$dir" 2
done
# Training: one MNIST epoch of LeNet-5 and a ResNet train step, cnn and PyTorch
# in turn, in rounds too.
(cd ../.. && cargo bench --quiet --bench training --no-run)
for _ in $(seq 1 "${ROUNDS:-3}"); do
    for threads in 1 2; do
        (cd ../.. && RAYON_NUM_THREADS=$threads cargo bench --quiet --bench training -- --epoch) | tee -a "$dir/epochs.txt"
        python3 peers.py mnist "$threads" | tee -a "$dir/epochs.txt"
        RAYON_NUM_THREADS=$threads ./target/release/cnn-peers train "$dir"
        python3 peers.py resnet "$dir" "$threads"
    done
done
RAYON_NUM_THREADS=1 ./target/release/cnn-peers peers "$dir"
RAYON_NUM_THREADS=2 ./target/release/cnn-peers peers "$dir"
python3 peers.py table "$dir"
python3 peers.py epochs "$dir"
