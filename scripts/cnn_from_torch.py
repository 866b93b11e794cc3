"""Print the `cnn!` definition of a PyTorch model, so that nobody writes it
by hand: an `nn.Sequential`, or a module with named children such as
torchvision's ResNets (`BasicBlock`, `Bottleneck`), MobileNetV2
(`InvertedResidual`, `Conv2dNormActivation`) and GoogLeNet (`Inception`,
`BasicConv2d`), nested `nn.Sequential`s included.

    import torch.nn as nn
    from cnn_from_torch import cnn_definition
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), ...)
    print(cnn_definition(model, (1, 32, 32), name="LeNet5"))

    import torchvision
    print(cnn_definition(torchvision.models.resnet18(), (3, 224, 224), name="ResNet18"))

The input is given as PyTorch gives it, (C, H, W). Every module becomes one
item, so the item at position i of a sequence is module i of the
Sequential, and a named child is a labelled item: the names `load_pytorch`
reads the weights by (`layer2.0.downsample.0.weight`). The shapes are
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
        if _pair(m.output_size) == tuple(shape[2:]):
            # VGG's and AlexNet's pool to the size their features already
            # have (at 224x224): the identity, flattened as a global pool is.
            return "flatten"
        if _pair(m.output_size) != (1, 1):
            raise ValueError(f"{m}: only output size 1, or the input's own size, is supported")
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
    if isinstance(m, nn.Upsample):
        if m.mode != "nearest" or m.size is not None:
            raise ValueError(f"{m}: only nearest upsampling by a scale factor is supported")
        f = _pair(m.scale_factor)
        if any(float(v) != int(v) for v in f):
            raise ValueError(f"{m}: only whole scale factors are supported")
        return "upsample " + ("x".join(str(int(v)) for v in f) if f[0] != f[1] else str(int(f[0])))
    if isinstance(m, nn.Dropout):
        return f"dropout {m.p!r}"
    if isinstance(m, nn.LeakyReLU):
        return "leakyrelu" if m.negative_slope == 0.01 else f"leakyrelu {m.negative_slope!r}"
    if isinstance(m, nn.Softmax):
        if m.dim not in (1, -1 if len(shape) == 2 else 1):
            raise ValueError(f"{m}: softmax must run over channels or features (dim=1)")
        return "softmax"
    simple = {nn.ReLU6: "relu6", nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu"}
    for kind, word in simple.items():
        if isinstance(m, kind):
            return word
    raise ValueError(f"{m}: no cnn layer for this module")


def _shape(x):
    dims = list(x.shape[2:]) + [x.shape[1]] if x.dim() == 4 else list(x.shape[1:])
    return "x".join(str(v) for v in dims)


def _label(name, position):
    return "" if name == str(position) else f"{name}: "


def _sequence(children, x, indent):
    """The items of `(name, module)` pairs in order, as lines of text
    inside braces, and the output."""
    items = []
    for position, (name, m) in enumerate(children):
        text, x = _item(m, x, indent)
        items.append(f"{indent}{_label(name, position)}{text};")
    return items, x


def _braced(items, outer):
    return "{\n" + "\n".join(items) + f"\n{outer}}}"


def _item(m, x, indent):
    """The text of module `m` on input `x`, its first line unindented and
    the rest at `indent`, and its output."""
    from torchvision.models.googlenet import BasicConv2d, Inception
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock, Bottleneck

    inner = indent + "    "
    if isinstance(m, BasicConv2d):
        # GoogLeNet's conv and batchnorm, with a ReLU of its forward's own.
        children = [("conv", m.conv), ("bn", m.bn), ("2", nn.ReLU())]
        items, _ = _sequence(children, x, inner)
        with torch.no_grad():
            return _braced(items, indent), m(x)
    if isinstance(m, Inception):
        names = ["branch1", "branch2", "branch3", "branch4"]
        branches = [f"{name}: {_item(getattr(m, name), x, indent)[0]}" for name in names]
        with torch.no_grad():
            return "concat " + " ".join(branches), m(x)
    if isinstance(m, (BasicBlock, Bottleneck)):
        names = ["conv1", "bn1", "relu", "conv2", "bn2"]
        names += ["relu", "conv3", "bn3"] if isinstance(m, Bottleneck) else []
        # The block's one ReLU module is applied at several places: unlabelled.
        children = [(n if n != "relu" else str(i), getattr(m, n)) for i, n in enumerate(names)]
        body, _ = _sequence(children, x, inner)
        text = "residual " + _braced(body, indent)
        if m.downsample is not None:
            shortcut, _ = _sequence(list(m.downsample.named_children()), x, inner)
            text += " downsample: shortcut " + _braced(shortcut, indent)
        with torch.no_grad():
            return text + " relu", m(x)
    if isinstance(m, InvertedResidual):
        conv, _ = _item(m.conv, x, inner)
        text = _braced([f"{inner}conv: {conv};"], indent)
        with torch.no_grad():
            return ("residual " + text if m.use_res_connect else text), m(x)
    if isinstance(m, nn.Sequential):
        items, y = _sequence(list(m.named_children()), x, inner)
        return _braced(items, indent), y
    text = _layer(m, tuple(x.shape))
    with torch.no_grad():
        y = m(x)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # cnn's global pools are flat, as torchvision's forward makes them.
        y = y.flatten(1)
    return text, y


def _children(model):
    """The top-level items of `model`: its children, and what its forward
    does without a module (torchvision's MobileNetV2 pools in `forward`)."""
    from torchvision.models.mobilenetv2 import MobileNetV2

    children = list(model.named_children())
    if isinstance(model, MobileNetV2):
        return [children[0], ("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())), children[1]]
    return children


def cnn_definition(model: nn.Module, input_chw, name="Net"):
    """The `cnn!` item for `model` on inputs of shape (C, H, W)."""
    c, h, w = input_chw
    lines = [f"input {h}x{w}x{c};"]
    x = torch.zeros(1, c, h, w)
    model = model.eval()
    with torch.no_grad():
        if isinstance(model, nn.Sequential):
            for i, m in enumerate(model):
                text = _layer(m, tuple(x.shape))
                x = m(x)
                lines.append(f"{text};".ljust(40) + f"// {i}: {_shape(x)}")
        else:
            for n, m in _children(model):
                if n == "pool":
                    lines.append("globalavgpool;")
                    x = m(x)
                    continue
                text, x = _item(m, x, "        ")
                lines.append(f"{n}: {text};")
    body = "\n".join(f"        {line}" for line in lines)
    return f"cnn::cnn! {{\n    pub struct {name} {{\n{body}\n    }}\n}}"
