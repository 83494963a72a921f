"""Adversarial distillation: a discriminator tells the teacher's outputs from the student's.

Following Xu, Hsu and Huang (2018) and Wang et al. (2018, KDGAN), a small network ``D`` sees a
softened output distribution together with the example's label (a *conditional* discriminator)
and is trained to say whether the distribution came from the teacher (1) or from the student
(0). The student is trained, besides the usual distillation loss, to make ``D`` say 1 for its own
outputs:

    L_D = BCE(D(p_teacher, y), 1) + BCE(D(p_student, y), 0)        (discriminator step)
    L_student = KD loss + weight * BCE(D(p_student, y), 1)           (student step)

:class:`AdversarialTerm` holds ``D`` and its optimiser. Passed to :func:`kdlib.train.train` as
``extra_loss``, it makes one discriminator step per batch and returns the student's adversarial
term; the teacher is frozen, so no gradient reaches it. It is also a term of :mod:`kdlib.terms`
(``"adversarial"``: ``train(..., terms=[...])``), whose :meth:`~AdversarialTerm.end_epoch`
``train`` then calls after every epoch; it has no parameters for the student's optimiser (the
discriminator has its own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.terms import Step, Term, register_term


class Discriminator(nn.Module):
    """``[probabilities, one-hot label] -> logit`` of "this came from the teacher"."""

    def __init__(self, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        if num_classes < 2 or hidden < 1:
            raise ValueError(f"num_classes must be >= 2 and hidden >= 1, got {num_classes} and {hidden}")
        self.num_classes = num_classes
        self.net = nn.Sequential(nn.Linear(2 * num_classes, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, probabilities: Tensor, labels: Tensor) -> Tensor:
        one_hot = F.one_hot(labels, self.num_classes).to(probabilities.dtype)
        return self.net(torch.cat([probabilities, one_hot], dim=1)).squeeze(1)


@register_term("adversarial")
class AdversarialTerm(Term):
    """The adversarial part of the loss: a term of :mod:`kdlib.terms`, or an ``extra_loss``.

    ``weight``: the adversarial term's weight in the student's loss; ``temperature``: the
    softening of both distributions before ``D`` sees them; ``lr``: the discriminator's Adam
    learning rate. :attr:`history` holds, per epoch (call :meth:`end_epoch`; ``train`` calls it
    when the term is in its ``terms``), the discriminator's accuracy on the batches it saw: near
    0.5 means it cannot tell student from teacher.

    Called with a :class:`~kdlib.terms.Step` it returns the term before its weight (the
    protocol); called as ``term(logits, teacher_logits, labels)`` (``train``'s ``extra_loss``, the
    older path) it returns ``weight`` times it.
    """

    def __init__(self, num_classes: int, weight: float = 0.1, temperature: float = 4.0, lr: float = 1e-3,
                 seed: int = 0) -> None:
        if not weight > 0 or not temperature > 0 or not lr > 0:
            raise ValueError(f"weight, temperature and lr must be > 0, got {weight}, {temperature}, {lr}")
        super().__init__(weight)
        torch.manual_seed(seed)
        self.discriminator = Discriminator(num_classes)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
        self.temperature = temperature
        self.history: list[float] = []
        self._correct, self._seen = 0.0, 0

    def __call__(self, step: Step | Tensor, teacher_logits: Tensor | None = None,
                 labels: Tensor | None = None) -> Tensor:
        if isinstance(step, Step):
            return self.loss(step.logits, step.teacher_logits, step.labels)
        return self.weight * self.loss(step, teacher_logits, labels)

    def loss(self, student_logits: Tensor, teacher_logits: Tensor | None, labels: Tensor | None) -> Tensor:
        """One discriminator step, then the student's term (before its weight)."""
        if teacher_logits is None or labels is None:
            raise ValueError("adversarial distillation needs a teacher and labels (its discriminator is "
                             "conditioned on the label)")
        d = self.discriminator.to(student_logits.device)
        p_teacher = F.softmax(teacher_logits.detach().float() / self.temperature, dim=1)
        p_student = F.softmax(student_logits.float() / self.temperature, dim=1)
        # 1. the discriminator learns to tell them apart (the student is not updated here)
        real, fake = d(p_teacher, labels), d(p_student.detach(), labels)
        loss_d = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                  + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        self.optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizer.step()
        with torch.no_grad():
            self._correct += float((real > 0).sum() + (fake <= 0).sum())
            self._seen += 2 * len(real)
        # 2. the student's term: make the (updated) discriminator call its outputs the teacher's
        fooled = d(p_student, labels)
        return F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))

    def end_epoch(self) -> float:
        """Record and return the discriminator's accuracy over the epoch, and start a new count."""
        accuracy = self._correct / max(1, self._seen)
        self.history.append(accuracy)
        self._correct, self._seen = 0.0, 0
        return accuracy
