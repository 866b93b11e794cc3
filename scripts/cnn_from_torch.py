"""Print the `cnn!` definition of a PyTorch `nn.Sequential`, so that nobody
writes it by hand.

    import torch.nn as nn
    from cnn_from_torch import cnn_definition
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), ...)
    print(cnn_definition(model, (1, 32, 32), name="LeNet5"))

The input is given as PyTorch gives it, (C, H, W). Every module becomes one
layer, so the layer after `input` at position i is module i of the
Sequential, the index `load_pytorch` reads its weights from. The shapes are
found by running the model on zeros; a size PyTorch rounds is written with
`floor` (or `ceil` for `ceil_mode=True`), so that the definition says what
PyTorch does silently.
"""

import torch
import torch.nn as nn


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _size(name, pair):
    h, w = pair
    return f"{name}{h}" if h == w else f"{name}{h}x{w}"


def _whole(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) % s == 0


def _layer(m, shape):
    """The layer text of module `m` whose input has `shape` (N, C, H, W) or (N, F)."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise ValueError(f"{m}: only zero padding is supported")
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        parts = [f"conv {m.in_channels} -> {m.out_channels}", _size("k", k)]
        if s != (1, 1):
            parts.append(_size("s", s))
        if m.padding == "same":
            parts.append("same")
            p = None
        else:
            p = (0, 0) if m.padding == "valid" else _pair(m.padding)
            if p != (0, 0):
                parts.append(_size("p", p))
        if d != (1, 1):
            parts.append(_size("d", d))
        if m.groups != 1:
            parts.append(f"g{m.groups}")
        if m.bias is None:
            parts.append("nobias")
        if p is not None:
            h, w = shape[2], shape[3]
            if not (_whole(h, k[0], s[0], p[0], d[0]) and _whole(w, k[1], s[1], p[1], d[1])):
                parts.append("floor")
        return " ".join(parts)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        is_max = isinstance(m, nn.MaxPool2d)
        if is_max and _pair(m.dilation) != (1, 1):
            raise ValueError(f"{m}: pooling with dilation is not supported")
        if not is_max and (not m.count_include_pad or m.divisor_override is not None):
            raise ValueError(f"{m}: only count_include_pad=True without divisor_override is supported")
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        p = _pair(m.padding)
        parts = ["maxpool" if is_max else "avgpool", _size("k", k)]
        if s != k:
            parts.append(_size("s", s))
        if p != (0, 0):
            parts.append(_size("p", p))
        h, w = shape[2], shape[3]
        if not (_whole(h, k[0], s[0], p[0]) and _whole(w, k[1], s[1], p[1])):
            parts.append("ceil" if m.ceil_mode else "floor")
        return " ".join(parts)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        if _pair(m.output_size) != (1, 1):
            raise ValueError(f"{m}: only output size 1 is supported")
        # cnn's global pools give a flat [C]; the Flatten that follows in
        # PyTorch becomes a no-op `flatten`, so module indices stay aligned.
        return "globalavgpool" if isinstance(m, nn.AdaptiveAvgPool2d) else "globalmaxpool"
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise ValueError(f"{m}: only Flatten() with its defaults is supported")
        return "flatten"
    if isinstance(m, nn.Linear):
        return f"dense {m.in_features} -> {m.out_features}" + ("" if m.bias is not None else " nobias")
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        if not m.affine or not m.track_running_stats:
            raise ValueError(f"{m}: only affine batchnorm with running statistics is supported")
        return "batchnorm" if m.eps == 1e-5 else f"batchnorm {m.eps!r}"
    if isinstance(m, nn.Dropout):
        return f"dropout {m.p!r}"
    if isinstance(m, nn.LeakyReLU):
        return "leakyrelu" if m.negative_slope == 0.01 else f"leakyrelu {m.negative_slope!r}"
    if isinstance(m, nn.Softmax):
        if m.dim not in (1, -1 if len(shape) == 2 else 1):
            raise ValueError(f"{m}: softmax must run over channels or features (dim=1)")
        return "softmax"
    simple = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
    for kind, word in simple.items():
        if isinstance(m, kind):
            return word
    raise ValueError(f"{m}: no cnn layer for this module")


def cnn_definition(model: nn.Sequential, input_chw, name="Net"):
    """The `cnn!` item for `model` on inputs of shape (C, H, W)."""
    c, h, w = input_chw
    lines = [f"input {h}x{w}x{c};"]
    x = torch.zeros(1, c, h, w)
    model = model.eval()
    with torch.no_grad():
        for i, m in enumerate(model):
            text = _layer(m, tuple(x.shape))
            x = m(x)
            out = "x".join(str(v) for v in (list(x.shape[2:]) + [x.shape[1]] if x.dim() == 4 else x.shape[1:]))
            lines.append(f"{text};".ljust(40) + f"// {i}: {out}")
    body = "\n".join(f"        {line}" for line in lines)
    return f"cnn::cnn! {{\n    pub struct {name} {{\n{body}\n    }}\n}}"
