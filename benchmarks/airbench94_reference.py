"""A reference check of kdlib's fast recipe: airbench94's own training code, on this CPU.

    python benchmarks/airbench94_reference.py [--epochs 20] [--seeds 0 1] [--threads 2]

:mod:`kdlib.fastnet` is kdlib's own re-expression of airbench94's ideas. This script is the
other side of the comparison: the training loop of ``legacy/airbench94.py`` from Keller
Jordan's cifar10-airbench (MIT licence, (c) 2024 Keller Jordan), kept line for line where it
can be, with only what a CPU and the course's data need changed: float32 weights and optimiser
state with the convolutions and products in bfloat16 under autocast (airbench keeps float16
weights and float16 updates, with float32 batch norms, on a GPU); the course's CIFAR-10 mirror
instead of torchvision's download, its whitening fitted on a random 5,000 training images
(airbench takes the first 5,000 of the original files; the mirror is sorted by class); and a
seeded generator. The number of epochs is an argument (airbench94 trains 9.9). Same epochs, same data, same precision: if kdlib's recipe reached a
clearly lower accuracy than this, kdlib's version would have a fault; if they agree, the
accuracy is what this network, this schedule and this copy of the data give.

Rows go to results/benchmark_airbench94_reference.json (with provenance), saved as they finish.
"""

# The training loop, network and whitening below are adapted from legacy/airbench94.py of
# https://github.com/KellerJordan/cifar10-airbench, under this licence:
#
# Copyright (c) 2024 Keller Jordan
#
# Permission is hereby granted, free of charge, to any person obtaining
# a copy of this software and associated documentation files (the
# "Software"), to deal in the Software without restriction, including
# without limitation the rights to use, copy, modify, merge, publish,
# distribute, sublicense, and/or sell copies of the Software, and to
# permit persons to whom the Software is furnished to do so, subject to
# the following conditions:
#
# The above copyright notice and this permission notice shall be
# included in all copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND,
# EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
# MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
# NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE
# LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION
# OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
# WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

from __future__ import annotations

import argparse
import time
from math import ceil

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.data import display_source, load_cifar10
from kdlib.experiments import RESULTS_DIR
from kdlib.results import ResultFile, new_provenance

HYP = {"batch_size": 1024, "lr": 11.5, "momentum": 0.85, "weight_decay": 0.0153,
       "bias_scaler": 64.0, "label_smoothing": 0.2, "whiten_bias_epochs": 3, "translate": 2,
       "widths": (64, 256, 256), "batchnorm_momentum": 0.6, "scaling_factor": 1 / 9}
MEAN = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
STD = torch.tensor((0.2470, 0.2435, 0.2616)).view(1, 3, 1, 1)


def batch_crop(images: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    r = (images.size(-1) - crop) // 2
    shifts = torch.randint(-r, r + 1, size=(len(images), 2), generator=gen)
    out = torch.empty((len(images), 3, crop, crop), dtype=images.dtype)
    for sy in range(-r, r + 1):
        for sx in range(-r, r + 1):
            mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            out[mask] = images[mask, :, r + sy:r + sy + crop, r + sx:r + sx + crop]
    return out


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, n: int, momentum: float) -> None:
        super().__init__(n, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding="same", bias=False):
        super().__init__(cin, cout, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int, momentum: float) -> None:
        super().__init__()
        self.conv1, self.pool = Conv(cin, cout), nn.MaxPool2d(2)
        self.norm1, self.conv2 = BatchNorm(cout, momentum), Conv(cout, cout)
        self.norm2, self.activ = BatchNorm(cout, momentum), nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Mul(nn.Module):
    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


def make_net() -> nn.Sequential:
    w1, w2, w3 = HYP["widths"]
    m = HYP["batchnorm_momentum"]
    net = nn.Sequential(Conv(3, 24, 2, padding=0, bias=True), nn.GELU(), ConvGroup(24, w1, m),
                        ConvGroup(w1, w2, m), ConvGroup(w2, w3, m), nn.MaxPool2d(3), nn.Flatten(),
                        nn.Linear(w3, 10, bias=False), Mul(HYP["scaling_factor"]))
    net[0].weight.requires_grad = False
    return net.to(memory_format=torch.channels_last)


@torch.no_grad()
def init_whitening(layer: nn.Conv2d, x: torch.Tensor, eps: float = 5e-4) -> None:
    c, (h, w) = x.shape[1], layer.weight.shape[2:]
    patches = x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
    flat = patches.view(len(patches), -1)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat), UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, tta: bool) -> float:
    def mirror(x):
        return 0.5 * model(x).float() + 0.5 * model(x.flip(-1)).float()

    model.eval()
    out = []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for x in images.split(2000):
            x = x.contiguous(memory_format=torch.channels_last)
            if not tta:
                out.append(model(x).float())
                continue
            padded = F.pad(x, (1,) * 4, "reflect")
            shifted = [mirror(padded[:, :, :32, :32].contiguous(memory_format=torch.channels_last)),
                       mirror(padded[:, :, 2:34, 2:34].contiguous(memory_format=torch.channels_last))]
            out.append(0.5 * mirror(x) + 0.5 * torch.stack(shifted).mean(0))
    return 100.0 * (torch.cat(out).argmax(1) == labels).float().mean().item()


def run(data, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    bs, momentum = HYP["batch_size"], HYP["momentum"]
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = HYP["lr"] / kilostep_scale
    wd = HYP["weight_decay"] * bs / kilostep_scale
    lr_biases = lr * HYP["bias_scaler"]
    train = (data.train_images.float() / 255 - MEAN) / STD
    test = (data.test_images.float() / 255 - MEAN) / STD
    labels = data.train_labels
    steps_per_epoch = len(train) // bs  # drop_last, as airbench
    total = steps_per_epoch * epochs
    model = make_net()
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    other = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                           dict(params=other, lr=lr, weight_decay=wd / lr)], momentum=momentum, nesterov=True)

    def get_lr(step: int) -> float:
        warmup = int(total * 0.23)
        if step < warmup:
            frac = step / warmup
            return 0.2 * (1 - frac) + 1.0 * frac
        frac = (step - warmup) / (total - warmup)
        return 1.0 * (1 - frac) + 0.07 * frac

    sched = torch.optim.lr_scheduler.LambdaLR(opt, get_lr)
    alpha = 0.95 ** 5 * (torch.arange(total + 1) / total) ** 3
    ema = {k: v.clone() for k, v in model.state_dict().items()}

    def lookahead(decay: float) -> None:
        with torch.no_grad():
            for e, p in zip(ema.values(), model.state_dict().values()):
                if p.dtype.is_floating_point:
                    e.lerp_(p, 1 - decay)
                    p.copy_(e)

    # airbench fits the whitening on the first 5,000 training images, a random sample of the
    # original files; the course's mirror is sorted by class, so a random sample stands for them
    init_whitening(model[0], train[torch.randperm(len(train), generator=gen)[:5000]])
    # airbench pre-flips a random half once, then mirrors every image on odd epochs
    flip = torch.rand(len(train), generator=gen) < 0.5
    padded = F.pad(torch.where(flip[:, None, None, None], train.flip(-1), train), (2,) * 4, "reflect")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=HYP["label_smoothing"], reduction="none")
    step, curve, train_s = 0, [], 0.0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model[0].bias.requires_grad = epoch < HYP["whiten_bias_epochs"]
        model.train()
        images = batch_crop(padded, 32, gen)
        if epoch % 2 == 1:
            images = images.flip(-1)
        order = torch.randperm(len(images), generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * bs:(i + 1) * bs]
            x = images[idx].contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(model(x).float(), labels[idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 5 == 0:
                lookahead(alpha[step].item())
            if step >= total:
                lookahead(1.0)
        train_s += time.perf_counter() - t0
        acc = evaluate(model, test, data.test_labels, tta=False)
        curve.append({"epoch": epoch + 1, "train_s": train_s, "test_accuracy": acc})
        print(f"seed {seed} epoch {epoch + 1}: {acc:.2f}% after {train_s:.0f} s", flush=True)
    return {"seed": seed, "epochs": epochs, "test_accuracy": evaluate(model, test, data.test_labels, tta=True),
            "test_accuracy_no_tta": curve[-1]["test_accuracy"], "train_s": train_s, "curve": curve}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS_DIR / "benchmark_airbench94_reference.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_cifar10()
    provenance = new_provenance(hyperparameters=HYP, threads=args.threads, bfloat16=True,
                                source="KellerJordan/cifar10-airbench legacy/airbench94.py (MIT), ported to CPU",
                                data_source=display_source(data.source), profile="full")
    results = ResultFile(args.out, "benchmark_airbench94_reference", provenance)
    results.use_data_source(display_source(data.source))
    for seed in args.seeds:
        row_id = f"airbench94/epochs={args.epochs}/seed={seed}"
        if results.has(row_id):
            continue
        row = run(data, args.epochs, seed)
        results.put(row_id, row)
        print(f"{row_id}: {row['test_accuracy']:.2f}% (TTA) in {row['train_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
