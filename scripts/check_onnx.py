"""Check the ONNX models that tests/export.rs wrote: each NAME.onnx passes
onnx.checker, and onnxruntime's output on NAME.io.safetensors' input (NHWC,
given to the model as NCHW) is the output cnn's `forward` gave, within 1e-4
relative (or absolute below 1).

    python3 scripts/check_onnx.py DIR
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file


def main(directory):
    failed = []
    models = sorted(Path(directory).glob("*.onnx"))
    for path in models:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        io = load_file(str(path.with_suffix(".io.safetensors")))
        x, expected = io["input"], io["output"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (y,) = session.run(["output"], {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        if y.ndim == 4:
            y = y.transpose(0, 2, 3, 1)
        error = float(np.max(np.abs(y - expected) / np.maximum(np.abs(expected), 1.0)))
        ok = y.shape == expected.shape and error <= 1e-4
        print(f"{path.stem}: {y.shape}, largest relative difference {error:.2e} {'ok' if ok else 'FAILED'}")
        if not ok:
            failed.append(path.stem)
    if not models or failed:
        sys.exit(f"onnxruntime differs from cnn on {failed}" if failed else "no models")


if __name__ == "__main__":
    main(sys.argv[1])
