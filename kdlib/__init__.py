"""kdlib: the small library behind the course *Exploring Knowledge Distillation*.

The library a researcher reuses, floor by floor (CONTRIBUTING.md draws them from the imports):

1. **foundations**: :mod:`kdlib.data` (MNIST and CIFAR-10 as in-memory tensors from a local
   mirror), :mod:`kdlib.augment` (crops, flips and shifts of whole batches), :mod:`kdlib.models`
   (the report's MLPs and ResNets, ensembles), :mod:`kdlib.losses` (cross-entropy and the
   distillation loss of chapter 2), :mod:`kdlib.stats` (paired comparisons over seeds),
   :mod:`kdlib.fidelity` (agreement with the teacher), :mod:`kdlib.calibration`,
   :mod:`kdlib.bench` (timings, FLOPs), :mod:`kdlib.theory` (the Monte-Carlo toolkit of the two
   lemmas), :mod:`kdlib.figures`, :mod:`kdlib.results` (result files with provenance, written
   atomically), :mod:`kdlib.checkpoints` (trained models cached under a hash of their recipe),
   :mod:`kdlib.export` (a model saved with its preprocessing), :mod:`kdlib.errors`,
   :mod:`kdlib.profile` (the ``KDLIB_PROFILE`` switch), :mod:`kdlib.threads`,
   :mod:`kdlib.precision` (bfloat16 where the hardware has it) and :mod:`kdlib.distributed`
   (rows sharded over processes);
2. **training and methods**: :mod:`kdlib.train` (one training loop for ordinary training and
   offline distillation), :mod:`kdlib.terms` (a method is a term of the loss; the registry),
   :mod:`kdlib.features` (feature maps by forward hooks), the methods one module each in
   :mod:`kdlib.methods` (``kd``, ``fitnets``, ``attention``, ``crd``, ``adversarial``, ``sp``,
   ``dkd``, ``dist``, ``logit_std``), :mod:`kdlib.quantize` (building and deploying an int8
   student), :mod:`kdlib.fastnet` (a fast CIFAR-10 network and recipe, after airbench) and
   :mod:`kdlib.stacked` (many small MLP students trained at once, as one stack);
3. **experiments**: :mod:`kdlib.experiments`, one module per table of the book and the
   command-line runner.

Beside the library, :mod:`kdlib.course` holds the course's machinery (exercise checkers, the
student edition, Otter-Grader assignments, the instructor page, releases); nothing in the
library imports it.

The names a reader uses most are importable from ``kdlib`` itself (loaded on first use, so
``import kdlib`` stays cheap): :class:`TrainConfig`, :func:`predict_logits`,
:func:`accuracy`, :func:`load_dataset`, :func:`mlp`, :func:`cifar_resnet`, :func:`seeded`,
:func:`make_term` and the method terms. The loop itself is :func:`kdlib.train.train` (``kdlib.train``
is its module, so it is not re-exported under that name).
"""

__version__ = "0.1.0"

REPOSITORY = "https://github.com/exploring-kd/exploring-knowledge-distillation"
"""Where the course lives. The one place kdlib reads it from; the book's configuration
(``_config.yml``), ``pyproject.toml`` and each chapter's Colab install cell carry the same
address, and a test fails if any of them differs."""
BRANCH = "main"
STUDENT_BRANCH = "student-edition"
"""The branch the release publishes the student edition's notebooks to (the contents of
``_build/student``: ``chapters/*.ipynb`` at its root); the student book's launch buttons open
them there, never the notebooks with solutions."""

_PUBLIC = {
    "TrainConfig": "kdlib.train", "TrainLog": "kdlib.train",
    "predict_logits": "kdlib.train", "accuracy": "kdlib.train",
    "load_dataset": "kdlib.data", "load_mnist": "kdlib.data", "load_cifar10": "kdlib.data",
    "mlp": "kdlib.models", "cifar_resnet": "kdlib.models", "seeded": "kdlib.models", "Ensemble": "kdlib.models",
    "Term": "kdlib.terms", "Step": "kdlib.terms", "TERMS": "kdlib.terms", "make_term": "kdlib.terms",
    "register_term": "kdlib.terms",
    "LabelTerm": "kdlib.methods", "KDTerm": "kdlib.methods", "FitNetsTerm": "kdlib.methods",
    "AttentionTerm": "kdlib.methods", "CRDTerm": "kdlib.methods", "AdversarialTerm": "kdlib.methods",
    "paired_gap": "kdlib.stats",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    """Load a public name's module on first use (PEP 562)."""
    import importlib
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kdlib' has no attribute {name!r}")
