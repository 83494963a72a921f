"""kdlib: the small library behind the course *Exploring Knowledge Distillation*.

Modules, each about one thing:

* :mod:`kdlib.profile` - the ``KDLIB_PROFILE`` switch (quick / full / paper scale);
* :mod:`kdlib.data` - MNIST and CIFAR-10 as in-memory tensors from a local mirror;
* :mod:`kdlib.augment` - random crops, flips and shifts of whole batches;
* :mod:`kdlib.losses` - softmax cross-entropy and the distillation loss;
* :mod:`kdlib.models` - the MLPs of the MNIST table and the ResNets of the CIFAR-10 table;
* :mod:`kdlib.train` - one training loop for ordinary training and offline distillation;
* :mod:`kdlib.terms` - a method is a term: the loss as a weighted sum of terms, and their registry;
* :mod:`kdlib.threads` - how many CPU threads training uses, chosen by the kind of work;
* :mod:`kdlib.precision` - when to train in bfloat16, chosen by the hardware;
* :mod:`kdlib.checkpoints` - trained models cached under a hash of their recipe, verified on load;
* :mod:`kdlib.calibration` - log-loss, reliability bins and expected calibration error;
* :mod:`kdlib.stats` - paired comparisons over seeds with confidence intervals;
* :mod:`kdlib.bench` - inference timings (warm-up, repeats, median) and FLOP counts;
* :mod:`kdlib.theory` - the Monte-Carlo toolkit of the two lemmas;
* :mod:`kdlib.results` - result files with provenance, written atomically;
* :mod:`kdlib.quantize` - fake quantization, quantization-aware training and int8 models;
* :mod:`kdlib.adversarial` - a discriminator as an extra term of the distillation loss;
* :mod:`kdlib.features` - feature maps by forward hooks, FitNets hints and attention transfer;
* :mod:`kdlib.contrastive` - contrastive representation distillation (CRD) with memory banks;
* :mod:`kdlib.errors` - OS errors that name the path, its role and the fix;
* :mod:`kdlib.checks` - checkers for the exercises;
* :mod:`kdlib.editions` - the student edition (solutions removed) and the instructor's tables;
* :mod:`kdlib.assignments` - Otter-Grader assignments from the exercises, and local grading;
* :mod:`kdlib.instructor` - the instructor page's outline, study hours, plan and rubrics;
* :mod:`kdlib.release` - the release's version tag and the chapters' Colab install line;
* :mod:`kdlib.figures` - plots the chapters share;
* :mod:`kdlib.experiments` - one module per table of the report, the regimes of chapter 7, and
  the command-line runner.
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
