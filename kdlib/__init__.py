"""kdlib: the small library behind the course *Exploring Knowledge Distillation*.

Modules, each about one thing:

* :mod:`kdlib.profile` - the ``KDLIB_PROFILE`` switch (quick / full / paper scale);
* :mod:`kdlib.data` - MNIST and CIFAR-10 as in-memory tensors from a local mirror;
* :mod:`kdlib.results` - result files with provenance, written atomically.
"""

__version__ = "0.1.0"
