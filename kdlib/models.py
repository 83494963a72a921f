"""The networks of the course.

* :func:`mlp`: fully connected networks for MNIST: the report's teacher 784-1200-1200-10 and its
  one-hidden-layer students 784-H-10 (H = 50, 300, 600).
"""

from __future__ import annotations

from torch import nn


def mlp(hidden: list[int] | tuple[int, ...], in_features: int = 784, num_classes: int = 10,
        dropout: float = 0.0) -> nn.Sequential:
    """A ReLU multilayer perceptron ``in_features -> hidden[0] -> ... -> num_classes``.

    The input is flattened first, so the network takes images ``(N, 1, 28, 28)`` directly.
    ``dropout`` (a probability) is applied after every hidden layer when it is above 0.
    """
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"hidden must list at least one positive layer width, got {hidden!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
