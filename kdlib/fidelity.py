"""Fidelity: how closely a student matches its teacher (Stanton et al., 2021).

Accuracy asks whether the student is right; fidelity asks whether it says what its teacher says.
Two measures, both on the same images for student and teacher:

* top-1 *agreement*: the fraction of images on which the two predict the same class;
* ``KL(teacher || student)`` at temperature 1: how far the student's probabilities are from the
  teacher's (nats, 0 when they are equal), the divergence distillation minimises at ``T = 1``.

Stanton et al. found that students can agree poorly with their teachers even on the training
images, and that more agreement does not always mean more accuracy.
"""

from __future__ import annotations

from torch import Tensor

FIXED_ORDER_CHUNK = 4096
"""The KL's mean is added up in chunks of this many images, each below PyTorch's threshold for
splitting a sum over threads."""


def fidelity(student_logits: Tensor, teacher_logits: Tensor) -> dict[str, float]:
    """Top-1 agreement with the teacher and the mean KL(teacher || student) at T = 1 (nats)."""
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (N, C) for the same images, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    log_p = teacher_logits.float().log_softmax(1)
    log_q = student_logits.float().log_softmax(1)
    per_image = (log_p.exp() * (log_p - log_q)).sum(1).double()
    # the mean in a fixed order: chunks too small to be split over threads, added up in turn, so
    # that it does not change with the thread count (a mean over 60,000 values split over two
    # threads adds them up in another order)
    kl = sum(chunk.sum().item() for chunk in per_image.split(FIXED_ORDER_CHUNK)) / max(1, len(per_image))
    return {"agreement": (student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean().item(),
            "kl": kl}


def fidelity_fields(train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> dict[str, dict[str, float]]:
    """A result row's fidelity columns: ``fidelity_train`` and ``fidelity_test``, each from a
    pair ``(student_logits, teacher_logits)`` on the training (transfer) and the test images."""
    return {"fidelity_train": fidelity(*train), "fidelity_test": fidelity(*test)}
