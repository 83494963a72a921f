"""kdlib: the small library behind the course *Exploring Knowledge Distillation*.

Modules, each about one thing:

* :mod:`kdlib.profile` - the ``KDLIB_PROFILE`` switch (quick / full / paper scale);
* :mod:`kdlib.data` - MNIST and CIFAR-10 as in-memory tensors from a local mirror;
* :mod:`kdlib.augment` - random crops, flips and shifts of whole batches;
* :mod:`kdlib.losses` - softmax cross-entropy and the distillation loss;
* :mod:`kdlib.models` - the MLPs of the MNIST table and the ResNets of the CIFAR-10 table;
* :mod:`kdlib.train` - one training loop for ordinary training and offline distillation;
* :mod:`kdlib.threads` - how many CPU threads training uses, chosen by the kind of work;
* :mod:`kdlib.precision` - when to train in bfloat16, chosen by the hardware;
* :mod:`kdlib.checkpoints` - trained models cached under a hash of their recipe, verified on load;
* :mod:`kdlib.calibration` - log-loss, reliability bins and expected calibration error;
* :mod:`kdlib.stats` - paired comparisons over seeds with confidence intervals;
* :mod:`kdlib.bench` - inference timings (warm-up, repeats, median) and FLOP counts;
* :mod:`kdlib.theory` - the Monte-Carlo toolkit of the two lemmas;
* :mod:`kdlib.results` - result files with provenance, written atomically;
* :mod:`kdlib.checks` - checkers for the exercises;
* :mod:`kdlib.figures` - plots the chapters share;
* :mod:`kdlib.experiments` - one module per table of the report, the regimes of chapter 7, and
  the command-line runner.
"""

__version__ = "0.1.0"
