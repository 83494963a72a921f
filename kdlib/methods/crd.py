"""Contrastive representation distillation (CRD; Tian, Krishnan and Isola, ICLR 2020).

KD matches the teacher's *outputs* one class at a time; CRD asks the student's representation
to carry what the teacher's carries by a contrastive game. Both penultimate feature vectors
(for :func:`kdlib.models.cifar_resnet`, the pooled features before the classifier) go through a
learned linear *embedding* to ``embed_dim`` numbers, normalised to length 1: ``s`` for the
student, ``t`` for the teacher. For a training image ``i``, the pair (student of ``i``, teacher
of ``i``) is *positive*; the student of ``i`` with the teacher of another image ``j`` is
*negative*. A critic ``h(s, t) = exp(s . t / tau) / Z`` scores pairs, and the term is the
noise-contrastive (NCE) loss of telling the one positive from ``K`` negatives:

    CRD = - mean over the batch of [ log h+ / (h+ + K/N) + sum over the K negatives of
          log (K/N) / (h- + K/N) ]

(``N`` the number of training images), computed both ways: student anchors against the
teacher's embeddings and teacher anchors against the student's.

The negatives' embeddings are not computed afresh: a *memory bank* keeps one embedding per
training image for each network, refreshed with momentum 0.5 when the image is in a batch (the
batch's indices, :attr:`kdlib.terms.Step.indices`), as in the authors' code (RepDistiller). The
negatives of an image are drawn from images of *other* classes (RepDistiller's default for
CIFAR), and ``Z`` is fixed at the first batch to ``N`` times the mean score, as there.

The two embeddings are the term's own parameters (:meth:`CRDTerm.parameters`): ``train``
trains them with the student. The teacher's network stays frozen; its embedding is trained.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.terms import Step, Term, register_term


def nce_loss(scores: Tensor, n_data: int) -> Tensor:
    """The NCE loss of ``scores`` ``(B, 1 + K)`` (column 0 the positive, normalised critic
    values ``h``), with negatives drawn from ``n_data`` images: the module's formula."""
    k = scores.shape[1] - 1
    noise = k / n_data
    eps = 1e-7
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    negative = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(positive.sum() + negative.sum()) / len(scores)


class OtherClassSampler:
    """Draws, for each image of a batch, ``k`` indices of training images of other classes
    (uniformly, with replacement), from its own seeded generator."""

    def __init__(self, labels: Tensor, k: int, seed: int = 0) -> None:
        labels = labels.detach().cpu().long()
        if labels.dim() != 1 or len(labels) < 2:
            raise ValueError(f"labels must be a 1-D tensor of at least 2 training labels, got shape "
                             f"{tuple(labels.shape)}")
        if k < 1:
            raise ValueError(f"the number of negatives k must be >= 1, got {k}")
        self.labels, self.k = labels, k
        self.others = {int(c): torch.nonzero(labels != c).flatten() for c in labels.unique()}
        if any(len(o) == 0 for o in self.others.values()):
            raise ValueError("CRD draws negatives from other classes: the training labels have one class only")
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, indices: Tensor) -> Tensor:
        """``(B,) -> (B, 1 + k)``: each image's own index, then its ``k`` negatives."""
        indices = indices.detach().cpu().long()
        classes = self.labels[indices]
        out = torch.empty(len(indices), 1 + self.k, dtype=torch.long)
        out[:, 0] = indices
        for c in classes.unique().tolist():
            rows = torch.nonzero(classes == c).flatten()
            pool = self.others[c]
            picks = torch.randint(len(pool), (len(rows), self.k), generator=self.generator)
            out[rows, 1:] = pool[picks]
        return out


@register_term("crd")
class CRDTerm(Term):
    """Contrastive representation distillation (the module's docstring).

    ``student_layer`` and ``teacher_layer`` name the modules (``named_modules()`` names) whose
    outputs are the penultimate features (flattened if they are not already), of sizes
    ``student_dim`` and ``teacher_dim``; ``labels`` are the training set's labels, in the order
    of the ``x`` given to :func:`kdlib.train.train` (the memory banks have one row per image).
    Defaults are RepDistiller's for CIFAR-100: 128-number embeddings, 16,384 negatives, critic
    temperature 0.07, momentum 0.5; its weight there is 0.8. The embeddings and the banks are
    made from PyTorch's global random generator; the negatives from a generator seeded with
    ``seed``. Train with ``teacher=...`` (run on each batch).
    """

    def __init__(self, student_layer: str, teacher_layer: str, student_dim: int, teacher_dim: int,
                 labels: Tensor, weight: float = 0.8, embed_dim: int = 128, negatives: int = 16_384,
                 nce_temperature: float = 0.07, momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__(weight)
        if not (nce_temperature > 0 and 0 <= momentum < 1):
            raise ValueError(f"nce_temperature must be > 0 and momentum in [0, 1), got {nce_temperature} "
                             f"and {momentum}")
        self.features = (f"student.{student_layer}", f"teacher.{teacher_layer}")
        self.embed_student = nn.Linear(student_dim, embed_dim)
        self.embed_teacher = nn.Linear(teacher_dim, embed_dim)
        self.sampler = OtherClassSampler(labels, negatives, seed)
        self.n_data, self.nce_temperature, self.momentum = len(labels), nce_temperature, momentum
        bound = 1 / math.sqrt(embed_dim / 3)  # RepDistiller's initial banks: uniform in [-bound, bound]
        self.bank_student = torch.rand(self.n_data, embed_dim).mul_(2 * bound).add_(-bound)
        self.bank_teacher = torch.rand(self.n_data, embed_dim).mul_(2 * bound).add_(-bound)
        self.z_student: float | None = None
        self.z_teacher: float | None = None

    def parameters(self) -> list[nn.Parameter]:
        return [*self.embed_student.parameters(), *self.embed_teacher.parameters()]

    def embed(self, step: Step) -> tuple[Tensor, Tensor]:
        """The batch's unit-length embeddings ``(s, t)``."""
        student, teacher = (step.features[name].flatten(1).float() for name in self.features)
        if step.check and (student.shape[1] != self.embed_student.in_features
                           or teacher.shape[1] != self.embed_teacher.in_features):
            raise ValueError(f"CRD expects features of sizes {self.embed_student.in_features} (student) and "
                             f"{self.embed_teacher.in_features} (teacher), got {student.shape[1]} and "
                             f"{teacher.shape[1]}: name the penultimate layers and their sizes")
        device = student.device
        self.embed_student.to(device)
        self.embed_teacher.to(device)
        return F.normalize(self.embed_student(student), dim=1), F.normalize(self.embed_teacher(teacher), dim=1)

    def __call__(self, step: Step) -> Tensor:
        s, t = self.embed(step)
        if step.check and int(step.indices.max()) >= self.n_data:
            raise ValueError(f"batch index {int(step.indices.max())} is beyond the "
                             f"{self.n_data} labels CRD was made with: give it the labels "
                             "of the whole training set passed to train")
        rows = self.sampler(step.indices).to(s.device)  # each image, then K negatives
        self.bank_student = self.bank_student.to(s.device)
        self.bank_teacher = self.bank_teacher.to(s.device)
        tau = self.nce_temperature
        # the student's embedding against the teacher's bank, and the other way round:
        # each image's dot product with the whole bank, then the rows drawn (the numbers
        # of gathering (B, 1 + K, D) bank rows first, with far less memory traffic)
        for_student = torch.exp((s @ self.bank_teacher.T).gather(1, rows) / tau)
        for_teacher = torch.exp((t @ self.bank_student.T).gather(1, rows) / tau)
        if self.z_student is None:  # Z: fixed at the first batch, as in RepDistiller
            self.z_student = float(for_student.detach().mean()) * self.n_data
            self.z_teacher = float(for_teacher.detach().mean()) * self.n_data
        loss = (nce_loss(for_student / self.z_student, self.n_data)
                + nce_loss(for_teacher / self.z_teacher, self.n_data))
        self.update_banks(step.indices.to(s.device), s.detach(), t.detach())
        return loss

    @torch.no_grad()
    def update_banks(self, indices: Tensor, s: Tensor, t: Tensor) -> None:
        """Each batch image's bank rows move towards its new embeddings (momentum), renormalised."""
        m = self.momentum
        # out of place: this step's loss still holds the old banks for its backward pass
        self.bank_student, self.bank_teacher = (
            bank.index_put((indices,), F.normalize(bank[indices] * m + new * (1 - m), dim=1))
            for bank, new in ((self.bank_student, s), (self.bank_teacher, t)))
