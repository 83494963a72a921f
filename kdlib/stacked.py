"""Many small students trained at once, as one stacked network.

A step of a 784-300-10 student at batch 32 is small: a large part of its time is likely spent
calling PyTorch rather than in arithmetic. The course's Table 1 run trains 51 such students
(17 per seed) in 7 shapes and schedules, 6 to 15 students each. :func:`train_stacked` trains
``S`` students of one shape and schedule together:
each layer's weights are kept as one tensor of shape ``(S, in, out)`` and every step is one
batched matrix product per layer (``torch.baddbmm``) over the ``S`` students' own batches.
Batched products also run on two threads, so one process can use both cores.

Each member keeps everything that makes its run its own, drawn exactly as :func:`kdlib.train.train`
draws it: its initial weights (the model passed in), its data order (a generator seeded with its
config's seed, one permutation per epoch), its teacher's logits, its temperature and its label
weight. The loss of each member is :func:`kdlib.losses.distillation_loss`'s, computed in the
same float64 precision; its gradient is written out by hand (:func:`backward`: the forms of
Hinton et al.'s section 2.1, in fewer operations per step than autograd's), and the optimiser
and learning-rate schedule are :func:`kdlib.train.make_optimizer`'s and
:func:`kdlib.train.make_scheduler`, whose updates act on each number separately. So a member
takes the steps it would take alone in :func:`kdlib.train.train`; only the matrix products,
the gradient (the same formula, other operations) and SGD's update (one call of PyTorch's
fused kernel for all of a stack's tensors, :func:`stack_optimizer`) are computed another way,
whose float32 rounding differs in the last bits. After one step a member's weights equal those of its
run in ``train`` to float32 rounding; over thousands of steps such differences grow, as they
do between two machines.

Within this module a member's steps do not depend on its stack at all: the batched products
split over threads by matrix, never within one, and every other operation acts on each
member's numbers alone, computed the same way wherever they sit in the stack (see
:func:`stack_optimizer` for what that takes of the fused update). A stack of one trains on one
thread (two would split its one matrix product), so a student gets the same weights, bit for
bit, whether it trains alone or with others, on one thread or two, in this process or
another. ``tests/test_stacked.py`` checks
this, and ``benchmarks/workers.py`` checks it for the whole of Table 1.

What can be stacked: plain multilayer perceptrons (:func:`kdlib.models.mlp` without dropout or
max-norm) of one shape, trained with one schedule (epochs, batch size, optimiser, learning rate,
momentum, weight decay, warm-up, label smoothing); the seed, the temperature, the label weight
and the teacher may differ from member to member.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.threads import at_most
from kdlib.train import (EpochCallback, TrainConfig, TrainLog, check_epoch_loss, make_optimizer,
                         make_scheduler)

__all__ = ["MEMBER_FIELDS", "backward", "linear_layers", "padded_stack", "stack_optimizer", "train_stacked"]

MEMBER_FIELDS = ("seed", "temperature", "label_weight")
"""The config fields in which the members of a stack may differ; all others must be equal."""

FUSED_BLOCK = 16
"""Each stacked tensor is kept at the start of a buffer whose length is a multiple of this many
numbers (one 64-byte cache line of float32; a whole number of vectors at every SIMD width
PyTorch uses, 4 to 16 floats), zeros after it: see :func:`stack_optimizer`."""


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The linear layers of a plain MLP (``Flatten``, then ``Linear`` and ``ReLU`` in turn, ending
    with a ``Linear``); anything else is refused with a message that says what can be stacked."""
    what = ("train_stacked trains plain MLPs, as kdlib.models.mlp(hidden) builds them (without "
            "dropout or max_norm); train this model with kdlib.train.train")
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"got a {type(model).__name__}: {what}")
    layers, expect_linear = [], True
    for module in model:
        if isinstance(module, nn.Flatten) and not layers:
            continue
        if expect_linear and type(module) is nn.Linear:
            layers.append(module)
        elif not expect_linear and type(module) is nn.ReLU:
            pass
        else:
            raise TypeError(f"it holds a {type(module).__name__} where a "
                            f"{'Linear' if expect_linear else 'ReLU'} layer was expected: {what}")
        expect_linear = not expect_linear
    if not layers or expect_linear:
        raise TypeError(f"it does not end with a Linear layer: {what}")
    return layers


def check_stack(models: Sequence[nn.Module], configs: Sequence[TrainConfig],
                teacher_logits: Sequence[Tensor | None], inputs: Tensor, labels: Tensor) -> None:
    """Members that can be trained as one stack: same shapes, same schedule, a teacher wherever
    a config asks for one; each mistake gets a message that says how to fix it."""
    if not models or not (len(models) == len(configs) == len(teacher_logits)):
        raise ValueError(f"train_stacked needs one config and one teacher_logits entry (None for none) "
                         f"per model, got {len(models)} models, {len(configs)} configs and "
                         f"{len(teacher_logits)} teacher_logits")
    shapes = [[tuple(layer.weight.shape) for layer in linear_layers(m)] for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"the models of a stack must have the same layers, got {sorted(set(map(str, shapes)))}: "
                         "stack the models of each shape separately")
    shared = [f.name for f in fields(TrainConfig) if f.init and f.name not in MEMBER_FIELDS]
    for config in configs[1:]:
        differ = [name for name in shared if getattr(config, name) != getattr(configs[0], name)]
        if differ:
            raise ValueError(f"the members of a stack share one schedule, but their configs differ in {differ}: "
                             f"only {list(MEMBER_FIELDS)} may differ; stack such runs separately")
    if configs[0].mixed_precision:
        raise ValueError("train_stacked trains in float32: set mixed_precision=False, or train with kdlib.train")
    if not inputs.is_floating_point() or labels.dtype != torch.int64 or len(inputs) != len(labels):
        raise TypeError(f"inputs must be floats and labels int64 class indices, one per input; got {inputs.dtype} "
                        f"inputs ({len(inputs)}) and {labels.dtype} labels ({len(labels)})")
    if len(inputs) == 0:
        raise ValueError("the training set is empty: pass at least one example")
    classes = shapes[0][-1][0]
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must be class indices in [0, {classes - 1}], got values from "
                         f"{labels.min().item()} to {labels.max().item()}")
    for i, (config, logits) in enumerate(zip(configs, teacher_logits)):
        if logits is None:
            if config.label_weight != 1.0:
                raise ValueError(f"member {i} has label_weight {config.label_weight} but no teacher_logits: "
                                 "pass its teacher's logits, or label_weight=1 to train on the labels alone")
            continue
        if config.label_weight == 1.0:
            raise ValueError(f"member {i} has teacher_logits but label_weight 1, which would ignore them "
                             "(label_weight is the weight of the LABEL loss): pass None, or lower label_weight")
        if config.label_smoothing > 0:
            raise ValueError(f"member {i} has a teacher, but label_smoothing applies to training on labels "
                             "alone: set it to 0, or stack only members without a teacher")
        if logits.shape != (len(inputs), classes) or not torch.isfinite(logits).all():
            raise ValueError(f"member {i}'s teacher_logits must be finite, of shape ({len(inputs)}, {classes}), "
                             f"one row per input; got {tuple(logits.shape)}")


def train_stacked(models: Sequence[nn.Module], inputs: Tensor, labels: Tensor, configs: Sequence[TrainConfig],
                  teacher_logits: Sequence[Tensor | None],
                  on_epoch: EpochCallback | None = None) -> list[TrainLog]:
    """Train ``models[i]`` in place with ``configs[i]`` and ``teacher_logits[i]`` (``None``: the
    labels alone), all at once, as :func:`kdlib.train.train` would train each of them (see the
    module's docstring for what "as" means here and for what can be stacked).

    ``on_epoch(epoch, model)``, as in :func:`kdlib.train.train`, is called after each epoch for
    each member in turn, with the member's model holding its weights of that moment (a test
    curve, say); what it returns goes into that member's ``history``. It may not stop training
    (members of a stack end together): returning ``{"stop": True}`` raises ``ValueError``.

    Returns one :class:`kdlib.train.TrainLog` per model. Its ``wall_s`` is the member's share of
    the stack's wall time (the stack's time over the number of members, epoch callbacks
    excluded), its ``samples_per_s`` the images it saw per second of that share; ``stack``
    records the stack's own wall time and size. Labels are read (for the training accuracy)
    even for a member whose label weight is 0. A stack of one model trains on one thread.
    """
    check_stack(models, configs, teacher_logits, inputs, labels)
    # one matrix per product: a stack of one on one thread, as each matrix of a larger stack
    with at_most(1 if len(models) == 1 else torch.get_num_threads()):
        return _train_stacked(models, inputs, labels, configs, teacher_logits, on_epoch)


@torch.no_grad()
def _train_stacked(models: Sequence[nn.Module], inputs: Tensor, labels: Tensor, configs: Sequence[TrainConfig],
                   teacher_logits: Sequence[Tensor | None], on_epoch: EpochCallback | None) -> list[TrainLog]:
    """The loop of :func:`train_stacked`, its arguments checked and its threads set."""
    config, size = configs[0], len(models)
    flat = inputs.reshape(len(inputs), -1)
    layers = [linear_layers(m) for m in models]
    # weight (S, in, out), bias (S, 1, out), layer by layer, each at the start of its buffer
    buffers, params, grads = [], [], []
    for depth in range(len(layers[0])):
        for tensors in ([ls[depth].weight.detach().T for ls in layers],
                        [ls[depth].bias.detach()[None] for ls in layers]):
            buffer, param = padded_stack(tensors)
            buffer.grad = torch.zeros_like(buffer)
            buffers.append(buffer)
            params.append(param)
            grads.append(buffer.grad[:param.numel()].view(param.shape))
    # the data order of each seed, drawn as kdlib.train draws it
    seeds = sorted({c.seed for c in configs})
    generators = [torch.Generator(device=inputs.device).manual_seed(s) for s in seeds]
    order_of = torch.tensor([seeds.index(c.seed) for c in configs], device=inputs.device)
    # one table of teacher logits per distinct teacher, and zeros for the members without one
    classes = params[-1].shape[-1]
    teachers, teacher_of = [torch.zeros(len(inputs), classes, device=inputs.device)], []
    for logits in teacher_logits:
        found = next((j for j, t in enumerate(teachers) if t is logits), None)
        if logits is not None and found is None:
            teachers.append(logits)
            found = len(teachers) - 1
        teacher_of.append(found or 0)
    table, teacher_of_t = torch.stack(teachers), torch.tensor(teacher_of, device=inputs.device)
    work = torch.float64  # the losses' precision, as in kdlib.losses
    temperature = torch.tensor([c.temperature for c in configs], dtype=work)[:, None, None]
    label_w = torch.tensor([c.label_weight for c in configs], dtype=work)
    kd_w = torch.tensor([(1.0 - c.label_weight) * c.temperature ** 2 for c in configs], dtype=work)
    # the weights of the two gradients below, one per member: (S, 1, 1)
    label_grad_w, kd_grad_w = label_w[:, None, None], kd_w[:, None, None] / temperature
    opt = stack_optimizer(buffers, config)
    steps_per_epoch = -(-len(inputs) // config.batch_size)
    schedule = make_scheduler(opt, config, steps_per_epoch)
    eps = config.label_smoothing
    losses: list[list[float]] = [[] for _ in models]
    accuracies: list[list[float | None]] = [[] for _ in models]
    histories: list[list[dict[str, float]]] = [[] for _ in models]
    callbacks_s = 0.0  # time spent in on_epoch, left out of the training time
    start = time.perf_counter()
    for epoch in range(config.epochs):
        orders = torch.stack([torch.randperm(len(inputs), generator=g, device=inputs.device) for g in generators])
        orders = orders[order_of]
        total = torch.zeros(size)
        correct = torch.zeros(size, dtype=torch.long)
        for begin in range(0, len(inputs), config.batch_size):
            idx = orders[:, begin:begin + config.batch_size]  # (S, batch): each member's own batch
            batch = idx.shape[1]
            # the input of each layer, the first gathered row by row (index_select: about twice
            # as fast as flat[idx] for these shapes, the same numbers)
            seen = [flat.index_select(0, idx.reshape(-1)).view(size, batch, -1)]
            for depth in range(0, len(params), 2):
                h = torch.baddbmm(params[depth + 1], seen[-1], params[depth])
                if depth + 2 < len(params):
                    seen.append(torch.relu(h))
            y = labels[idx]
            z = h.to(work)  # the logits, (S, batch, classes)
            log_p = F.log_softmax(z, dim=-1)
            log_s = F.log_softmax(z / temperature, dim=-1)
            log_t = F.log_softmax(table[teacher_of_t[:, None], idx].to(work) / temperature, dim=-1)
            p_t = log_t.exp()
            # each member's loss, as kdlib.losses.distillation_loss computes it (for the log) ...
            ce = -log_p.gather(-1, y[..., None]).squeeze(-1).mean(-1)
            target = F.one_hot(y, classes).to(work)
            if eps != 0.0:
                ce = (1.0 - eps) * ce - eps * log_p.mean(-1).mean(-1)
                target = (1.0 - eps) * target + eps / classes
            kl = (p_t * (log_t - log_s)).sum(-1).mean(-1)
            member_loss = (label_w * ce + kd_w * kl).float()  # (S,): each member's own loss
            # ... and its gradient with respect to the logits, by hand: (p - target) / batch for
            # the labels' cross-entropy, (q - p_t) / (T batch) for the KL divergence at
            # temperature T (Hinton et al., 2015, section 2.1), q the student's softened output
            grad = ((label_grad_w * (log_p.exp() - target) + kd_grad_w * (log_s.exp() - p_t))
                    / batch).float()
            backward(params, grads, seen, grad)  # each member's weights get its own loss's gradient
            opt.step()
            if schedule is not None:
                schedule.step()
            total += member_loss * batch
            correct += (h.argmax(-1) == y).sum(-1)
        for i, value in enumerate((total / len(inputs)).tolist()):
            losses[i].append(check_epoch_loss(value, epoch + 1, losses[i], configs[i], steps_per_epoch))
            accuracies[i].append(correct[i].item() / len(inputs))
        if on_epoch is not None:
            began = time.perf_counter()
            write_back(params, layers)
            for i, model in enumerate(models):
                returned = on_epoch(epoch + 1, model) or {}
                if isinstance(returned, dict) and returned.get("stop"):
                    raise ValueError("an epoch callback of train_stacked asked to stop, but the members of "
                                     "a stack train for the same number of epochs: train that model with "
                                     "kdlib.train.train to stop it early")
                histories[i].append(returned)
            callbacks_s += time.perf_counter() - began
    wall = time.perf_counter() - start - callbacks_s
    write_back(params, layers)
    share = wall / size
    return [TrainLog(wall_s=share, samples_per_s=config.epochs * len(inputs) / share, epoch_losses=losses[i],
                     history=histories[i], train_accuracy=accuracies[i], stack={"size": size, "wall_s": wall})
            for i in range(size)]


def padded_stack(tensors: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """``torch.stack(tensors)`` kept at the start of a flat buffer of zeros whose length is the
    next multiple of :data:`FUSED_BLOCK`: returns the buffer and the stacked view into it."""
    stacked = torch.stack(list(tensors))
    size = stacked.numel()
    buffer = torch.zeros(-(-size // FUSED_BLOCK) * FUSED_BLOCK, dtype=stacked.dtype, device=stacked.device)
    view = buffer[:size].view(stacked.shape)
    view.copy_(stacked)
    return buffer, view


def stack_optimizer(buffers: Sequence[Tensor], config: TrainConfig) -> torch.optim.Optimizer:
    """:func:`kdlib.train.make_optimizer`'s optimiser over a stack's ``buffers``
    (:func:`padded_stack`), with SGD's update done by PyTorch's fused kernel.

    A step of a stack of MLPs spends much of its time updating the first layer's weights, a pass
    over memory per operation: the fused kernel makes one pass instead of four, for all the
    tensors at once. It computes each number in vector registers, except a last part of a
    tensor shorter than one vector, which it computes one number at a time, possibly with
    other rounding. Every buffer's length is a multiple of :data:`FUSED_BLOCK`, so no number
    is ever in such a last part, alone or in any stack, and a member's update does not depend
    on its stack (the zeros after the stacked numbers get zero gradients and stay zero). Adam,
    and SGD in a PyTorch without the fused kernel (:func:`kdlib.train.fused_sgd_supported`),
    keep the batched per-operation update.
    """
    return make_optimizer(buffers, config, fused=config.optimizer == "sgd")


def backward(params: list[Tensor], grads: list[Tensor], seen: list[Tensor], grad: Tensor) -> None:
    """Write into ``grads[i]`` the gradient of ``params[i]`` from ``grad``, that of each member's loss
    with respect to its logits (S, batch, classes), by the chain rule through the MLP backwards:
    a layer ``h = a W + b`` gives ``a^T grad`` for ``W`` and the sum over the batch for ``b``, and
    passes ``grad W^T`` back, zero where the ReLU was off. ``seen[i]`` is layer ``i``'s input.
    The gradients are written into the same memory at every step (a fresh tensor of a large
    layer's size costs the system's fresh pages, several times the product's own time)."""
    for depth in range(len(params) - 2, -1, -2):
        a = seen[depth // 2]
        torch.bmm(a.transpose(1, 2), grad, out=grads[depth])
        torch.sum(grad, 1, keepdim=True, out=grads[depth + 1])
        if depth > 0:
            grad = torch.bmm(grad, params[depth].transpose(1, 2)).mul_(a > 0)


@torch.no_grad()
def write_back(params: list[Tensor], layers: list[list[nn.Linear]]) -> None:
    """Copy each member's slice of the stacked ``params`` into its own model's layers."""
    for i, member in enumerate(layers):
        for depth, layer in enumerate(member):
            layer.weight.copy_(params[2 * depth][i].T)
            layer.bias.copy_(params[2 * depth + 1][i, 0])
