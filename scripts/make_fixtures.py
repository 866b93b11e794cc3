"""Write the PyTorch fixtures of tests/pytorch_fixtures.rs: for each model, its
state_dict (`NAME.safetensors`, as `safetensors.torch.save_file` writes it)
and an input batch with PyTorch's own output (`NAME.io.safetensors`, input
in NHWC). Prints each model's `cnn!` definition. Then the same for the
classes that `pytorch()` wrote into `tests/fixtures/python` (tests/export.rs).

    python3 scripts/make_fixtures.py tests/fixtures
    python3 scripts/make_fixtures.py tests/fixtures tinygooglenet   # one only
"""

import sys
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file
from torchvision.models.googlenet import BasicConv2d, Inception
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from cnn_from_torch import cnn_definition


class TinyResNet(nn.Module):
    """torchvision's ResNet layout with its own BasicBlock and Bottleneck,
    a few channels wide: the state_dict keys are torchvision's."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        down = nn.Sequential(conv1x1(8, 16, 2), nn.BatchNorm2d(16))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2, downsample=down))
        down = nn.Sequential(conv1x1(16, 32, 2), nn.BatchNorm2d(32))
        self.layer3 = nn.Sequential(Bottleneck(16, 8, stride=2, downsample=down), Bottleneck(32, 8))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyGoogLeNet(nn.Module):
    """torchvision's GoogLeNet layout with its own Inception and BasicConv2d
    (batchnorm eps 0.001, ceil pools), a few channels wide: the state_dict
    keys are torchvision's."""

    def __init__(self):
        super().__init__()
        self.conv1 = BasicConv2d(3, 8, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(8, 4, 4, 8, 2, 4, 4)
        self.inception3b = Inception(20, 8, 4, 8, 4, 4, 4)
        self.maxpool3 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception4a = Inception(24, 8, 8, 8, 4, 8, 8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = torch.flatten(self.avgpool(self.inception4a(x)), 1)
        return self.fc(self.dropout(x))


def models():
    yield "lenet5", (1, 32, 32), nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )
    # Every option PyTorch rounds or pads in its own way.
    yield "options", (3, 15, 11), nn.Sequential(
        nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), groups=1),  # 8x11
        nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 8, 4, padding="same", dilation=1, groups=4, bias=False), nn.Sigmoid(),
        nn.Conv2d(8, 12, 3, padding="same", dilation=2), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        nn.AvgPool2d(2, stride=2, padding=1, ceil_mode=True),
        nn.Conv2d(12, 6, 2, stride=2),  # floor
        nn.Flatten(), nn.BatchNorm1d(1 * 2 * 6), nn.Dropout(0.3), nn.Linear(12, 5), nn.Softmax(dim=1),
    )
    yield "globalpool", (2, 13, 13), nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6, eps=1e-3), nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(6, 10, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(10, 4),
    )
    yield "tinyresnet", (3, 12, 12), TinyResNet()
    # torchvision's own class, narrow: inverted residuals with and without
    # the residual connection, depthwise convs, ReLU6.
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2]]
    yield "mobilenet", (3, 32, 32), MobileNetV2(num_classes=6, width_mult=0.25, inverted_residual_setting=setting)
    yield "flatbn", (3, 6, 5), nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
        nn.BatchNorm1d(4 * 4 * 3), nn.Linear(48, 7), nn.Tanh(),
    )
    # Inception blocks: four branches joined, a pool in one; rounded up twice.
    yield "tinygooglenet", (3, 27, 27), TinyGoogLeNet()


def randomize_batchnorm(model):
    """Batchnorm statistics worth testing."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)


def save_io(model, x, path):
    """The input (NHWC) and the model's output (NHWC if spatial)."""
    with torch.no_grad():
        y = model(x)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    expected = y.permute(0, 2, 3, 1).contiguous() if y.dim() == 4 else y.contiguous()
    save_file({"input": nhwc, "output": expected}, str(path))


def from_pytorch_sources(directory):
    """Each `NAME.py` that a network's `pytorch()` wrote (tests/export.rs keeps
    them current): the class built by PyTorch, its state_dict and output."""
    for source in sorted(Path(directory).glob("*.py")):
        scope = {}
        exec(source.read_text(), scope)
        name = [line.split()[1].split("(")[0] for line in source.read_text().splitlines() if line.startswith("class ")][-1]
        model = scope[name]().eval()
        randomize_batchnorm(model)
        doc = scope[name].__doc__
        c, h, w = [int(v) for v in doc.split("input (N, ")[1].split(")")[0].split(", ")]
        x = torch.rand(3, c, h, w) * 2 - 1
        save_file(model.state_dict(), str(source.with_suffix(".safetensors")))
        save_io(model, x, source.with_suffix(".io.safetensors"))
        print(f"// {source.stem}: {name}, torch {torch.__version__}")


def main(out, only=None):
    """Every fixture, or only those named: the generator runs through all,
    so that a fixture added last leaves the others as they are."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, chw, model in models():
        randomize_batchnorm(model)
        model.eval()
        x = torch.rand(4, *chw) * 2 - 1
        if only and name not in only:
            continue
        save_file(model.state_dict(), str(out / f"{name}.safetensors"))
        save_io(model, x, out / f"{name}.io.safetensors")
        print(f"// {name}: torch {torch.__version__}")
        print(cnn_definition(model, chw, name=name.capitalize()))
    if not only:
        from_pytorch_sources(out / "python")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures", sys.argv[2:])
