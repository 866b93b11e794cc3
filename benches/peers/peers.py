"""The ONNX half of the peers: `prepare DIR` turns cnn's saved weights into
PyTorch layout (for candle) and ONNX files (for tract and onnxruntime);
`ort DIR THREADS` times onnxruntime and checks its outputs against cnn's;
`mnist THREADS` trains PyTorch's LeNet-5 for one MNIST epoch (cnn's is
`cargo bench --bench training -- --epoch`); `torch DIR THREADS` times PyTorch (CPU, `torch.inference_mode`) on the same
weights; `table DIR` prints every engine's lowest median ms, its ratio to
cnn, and the spread between rounds; `epochs DIR` the same of the MNIST
epochs that run.sh logged in `DIR/epochs.txt`, and of the ResNet train
steps in `DIR/training.tsv` (`resnet DIR THREADS` times PyTorch's).

Needs numpy, safetensors, onnx, onnxruntime and torch (pip).
"""

import itertools
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file, save_file

# Seconds of warm-up calls before timing, for every engine alike.
WARM_UP_S = 0.2


def workloads(d):
    for line in (d / "workloads.tsv").read_text().splitlines():
        name, batch, hwc, spec = line.split("\t")
        yield name, int(batch), tuple(int(v) for v in hwc.split(",")), [l.split() for l in spec.split(";")]


def prepare(d):
    for name, batch, (h, w, c), spec in workloads(d):
        cnn = load_file(str(d / f"{name}.cnn.safetensors"))
        io = load_file(str(d / f"{name}.io.safetensors"))
        torch, nodes, inits = {}, [], []
        shape, flat_from, counts, x = (c, h, w), None, defaultdict(int), "input"
        for i, words in enumerate(spec):
            kind, out = words[0], f"t{i}"
            if kind == "conv":
                counts["conv"] += 1
                cout, k, s, p, bias = map(int, words[1:])
                field = f"conv{counts['conv']}"
                torch[f"{i}.weight"] = cnn[f"{field}.weight"].transpose(3, 2, 0, 1).copy()
                inputs = [x, f"{i}.weight"] + ([f"{i}.bias"] if bias else [])
                if bias:
                    torch[f"{i}.bias"] = cnn[f"{field}.bias"]
                nodes.append(helper.make_node("Conv", inputs, [out], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4))
                shape = (cout, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
            elif kind == "linear":
                counts["dense"] += 1
                field = f"dense{counts['dense']}"
                weight = cnn[f"{field}.weight"].T
                if flat_from is not None:  # rows in H, W, C order; PyTorch's in C, H, W
                    fc, fh, fw = flat_from
                    weight = weight.reshape(-1, fh, fw, fc).transpose(0, 3, 1, 2).reshape(weight.shape[0], -1)
                torch[f"{i}.weight"], torch[f"{i}.bias"] = weight.copy(), cnn[f"{field}.bias"]
                nodes.append(helper.make_node("Gemm", [x, f"{i}.weight", f"{i}.bias"], [out], transB=1))
                shape, flat_from = (weight.shape[0],), None
            elif kind in ("maxpool", "avgpool"):
                op = "MaxPool" if kind == "maxpool" else "AveragePool"
                nodes.append(helper.make_node(op, [x], [out], kernel_shape=[2, 2], strides=[2, 2]))
                shape = (shape[0], shape[1] // 2, shape[2] // 2)
            elif kind == "gap":
                nodes.append(helper.make_node("GlobalAveragePool", [x], [out]))
                shape = (shape[0], 1, 1)
            elif kind == "flatten":
                flat_from = shape if shape[1:] != (1, 1) else None
                nodes.append(helper.make_node("Flatten", [x], [out], axis=1))
                shape = (int(np.prod(shape)),)
            else:
                nodes.append(helper.make_node({"relu": "Relu", "tanh": "Tanh"}[kind], [x], [out]))
            x = out
        inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in torch.items()]
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, c, h, w])],
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, *shape])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(d / f"{name}.onnx"))
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in torch.items()}, str(d / f"{name}.torch.safetensors"))
        output = io["output"]
        if output.ndim == 4:
            output = output.transpose(0, 3, 1, 2)
        nchw = {"input": io["input"].transpose(0, 3, 1, 2), "output": output}
        save_file({k: np.ascontiguousarray(v) for k, v in nchw.items()}, str(d / f"{name}.nchw.safetensors"))
        print(f"{name}: {d / (name + '.onnx')}")


def median_ms(run, runs):
    """The median of `runs` timed calls of `run`, in ms, after warm-up calls
    for at least WARM_UP_S (at least three): a thread pool just started may
    have its threads on one core for the first few ms."""
    start = time.perf_counter()
    for i in itertools.count():
        run()
        if i >= 2 and time.perf_counter() - start >= WARM_UP_S:
            break
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def ort(d, threads):
    import onnxruntime as rt

    options = rt.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    with open(d / "results.tsv", "a") as results:
        for name, batch, _, _ in workloads(d):
            session = rt.InferenceSession(str(d / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
            io = load_file(str(d / f"{name}.nchw.safetensors"))
            x = np.ascontiguousarray(io["input"])
            y = session.run(None, {"input": x})[0]
            scale = np.maximum(np.abs(io["output"]), np.abs(io["output"]).max())
            worst = float((np.abs(y - io["output"]) / scale).max())
            assert worst < 1e-4, f"onnxruntime {name}: outputs differ by {worst:e} relative"
            runs = 15 if x.size > 400_000 else 31
            ms = median_ms(lambda: session.run(None, {"input": x}), runs)
            print(f"ort    {name} {threads} thread(s): {ms:8.3f} ms")
            results.write(f"onnxruntime\t{threads}\t{name}\t{ms:.4f}\n")


def pytorch_model(spec, channels, weights):
    """The workload as an `nn.Sequential`, module i being item i of the spec."""
    import torch.nn as nn

    modules = []
    for i, words in enumerate(spec):
        kind = words[0]
        if kind == "conv":
            cout, k, s, p, bias = map(int, words[1:])
            modules.append(nn.Conv2d(channels, cout, k, stride=s, padding=p, bias=bool(bias)))
            channels = cout
        elif kind == "linear":
            out_features, in_features = weights[f"{i}.weight"].shape
            modules.append(nn.Linear(in_features, out_features))
        elif kind in ("maxpool", "avgpool"):
            modules.append((nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(2, 2))
        elif kind == "gap":
            modules.append(nn.AdaptiveAvgPool2d(1))
        elif kind == "flatten":
            modules.append(nn.Flatten())
        else:
            modules.append({"relu": nn.ReLU, "tanh": nn.Tanh}[kind]())
    model = nn.Sequential(*modules).eval()
    model.load_state_dict(weights)
    return model


def pytorch(d, threads):
    """PyTorch on the CPU, `torch.inference_mode`, NCHW, the same weights."""
    import torch
    from safetensors.torch import load_file as load_torch

    torch.set_num_threads(threads)
    with open(d / "results.tsv", "a") as results:
        for name, batch, (h, w, c), spec in workloads(d):
            model = pytorch_model(spec, c, load_torch(str(d / f"{name}.torch.safetensors")))
            io = load_torch(str(d / f"{name}.nchw.safetensors"))
            x = io["input"].contiguous()
            with torch.inference_mode():
                y = model(x)
                scale = torch.maximum(io["output"].abs(), io["output"].abs().max())
                worst = float(((y - io["output"]).abs() / scale).max())
                assert worst < 1e-4, f"pytorch {name}: outputs differ by {worst:e} relative"
                runs = 15 if x.numel() > 400_000 else 31
                ms = median_ms(lambda: model(x), runs)
            print(f"torch  {name} {threads} thread(s): {ms:8.3f} ms")
            results.write(f"pytorch\t{threads}\t{name}\t{ms:.4f}\n")


def read_idx(path):
    import gzip

    data = gzip.open(path).read() if str(path).endswith(".gz") else open(path, "rb").read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist_train():
    """MNIST's training images (N, 1, 28, 28) in [0, 1] and labels, as torch tensors."""
    import torch

    root = Path(__file__).resolve().parents[2] / "data" / "mnist"
    images = next(p for p in root.iterdir() if p.name.startswith("train-images"))
    labels = next(p for p in root.iterdir() if p.name.startswith("train-labels"))
    x = torch.from_numpy(read_idx(images).astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(read_idx(labels).astype(np.int64))


def mnist(threads):
    """One epoch of LeNet-5 (as examples/mnist.rs) on MNIST in PyTorch: batches of
    64 in a shuffled order, Adam 1e-3, after 20 steps of warm-up."""
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    x, y = mnist_train()
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x))
    batches = [order[i : i + 64] for i in range(0, len(x), 64)]

    def step(indices):
        opt.zero_grad()
        loss = loss_fn(model(x[indices]), y[indices])
        loss.backward()
        opt.step()
        return float(loss)

    for indices in batches[:20]:
        step(indices)
    start = time.perf_counter()
    total = sum(step(indices) for indices in batches)
    seconds = time.perf_counter() - start
    print(f"PyTorch {torch.__version__} LeNet-5 MNIST epoch, batch 64, {threads} threads: "
          f"{seconds:.2f} s, {len(x) / seconds:.0f} images/s (mean loss {total / len(batches):.4f})")


def resnet(d, threads):
    """A train step of the ResNet that `cnn-peers train` timed, from its
    `pytorch()` module: the same batches in turn (the first 20 of 64 MNIST
    training images), Adam 1e-3."""
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    scope = {}
    exec((d / "resnet.py").read_text(), scope)
    model = scope["MnistResNet"]()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x, y = mnist_train()
    batches = itertools.cycle([(x[i : i + 64], y[i : i + 64]) for i in range(0, 64 * 20, 64)])

    def step():
        images, labels = next(batches)
        opt.zero_grad()
        loss_fn(model(images), labels).backward()
        opt.step()

    ms = median_ms(step, 15)
    print(f"torch  ResNet train step {threads} thread(s): {ms:8.3f} ms")
    with open(d / "training.tsv", "a") as f:
        f.write(f"pytorch\t{threads}\t{ms:.4f}\n")


def table(d):
    medians = defaultdict(list)
    for line in (d / "results.tsv").read_text().splitlines():
        engine, threads, name, ms = line.split("\t")
        medians[(engine, int(threads), name)].append(float(ms))
    # Several rounds: the lowest median of each, the speed of this kind of
    # machine drifting between minutes; the spread says by how much.
    times = {key: min(values) for key, values in medians.items()}
    spread = {key: max(values) / min(values) - 1 for key, values in medians.items()}
    names = sorted({k[2] for k in times})
    print("| engine | threads | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for engine in ["cnn", "onnxruntime", "pytorch", "tract", "candle"]:
        for threads in (1, 2):
            cells = []
            for name in names:
                ms, ours = times.get((engine, threads, name)), times.get(("cnn", threads, name))
                cells.append("-" if ms is None else f"{ms:.2f}" + ("" if engine == "cnn" or ours is None else f" ({ms / ours:.2f}x)"))
            if any(cell != "-" for cell in cells):
                print(f"| {engine} | {threads} | " + " | ".join(cells) + " |")
    print("\nspread between rounds (slowest median / fastest - 1):\n")
    print("| engine | threads | rounds | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for engine in ["cnn", "onnxruntime", "pytorch"]:
        for threads in (1, 2):
            keys = [(engine, threads, name) for name in names]
            if all(k in spread for k in keys):
                rounds = min(len(medians[k]) for k in keys)
                print(f"| {engine} | {threads} | {rounds} | " + " | ".join(f"{100 * spread[k]:.0f}%" for k in keys) + " |")


def cnn_beside_pytorch(times, what, unit, digits):
    """A table of `times[(engine, threads)]`, a list per round: each
    engine's fastest, the spread, PyTorch's time over cnn's; the fastest."""
    best = {key: min(values) for key, values in times.items()}

    def cell(key):
        if key not in best:
            return "-"
        return f"{best[key]:.{digits}f} ({100 * (max(times[key]) / best[key] - 1):.0f}%, {len(times[key])})"

    print(f"\n| {what}, threads | cnn {unit} (spread, rounds) | PyTorch {unit} (spread, rounds) | PyTorch / cnn |")
    print("|---|---|---|---|")
    for threads in (1, 2):
        cnn, torch = ("cnn", threads), ("pytorch", threads)
        ratio = f"{best[torch] / best[cnn]:.2f}x" if cnn in best and torch in best else "-"
        print(f"| {threads} | {cell(cnn)} | {cell(torch)} | {ratio} |")
    return best


def epochs(d):
    """The MNIST epochs of run.sh's rounds: each engine's fastest, the spread,
    PyTorch's time over cnn's and each engine's speed-up from a second
    thread; then the same of the ResNet train steps."""
    seconds = defaultdict(list)
    for line in (d / "epochs.txt").read_text().splitlines():
        match = re.match(r"(PyTorch|LeNet-5).* (\d) threads: ([\d.]+) s", line)
        if match:
            engine = "pytorch" if match[1] == "PyTorch" else "cnn"
            seconds[(engine, int(match[2]))].append(float(match[3]))
    best = cnn_beside_pytorch(seconds, "MNIST epoch", "s", 2)
    for engine in ["cnn", "pytorch"]:
        if (engine, 1) in best and (engine, 2) in best:
            print(f"\n{engine}: two threads {best[(engine, 1)] / best[(engine, 2)]:.2f}x one")
    steps = defaultdict(list)
    for line in (d / "training.tsv").read_text().splitlines():
        engine, threads, ms = line.split("\t")
        steps[(engine, int(threads))].append(float(ms))
    cnn_beside_pytorch(steps, "ResNet train step, batch 64", "ms", 1)


if __name__ == "__main__":
    command, d = sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else None
    commands = {
        "prepare": lambda: prepare(d),
        "ort": lambda: ort(d, int(sys.argv[3])),
        "torch": lambda: pytorch(d, int(sys.argv[3])),
        "mnist": lambda: mnist(int(sys.argv[2])),
        "resnet": lambda: resnet(d, int(sys.argv[3])),
        "table": lambda: table(d),
        "epochs": lambda: epochs(d),
    }
    commands[command]()
