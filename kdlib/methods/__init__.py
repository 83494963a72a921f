"""The distillation methods, one module per method, each a term of the loss (:mod:`kdlib.terms`).

==================  ===============  ===================================================
module              registered as    paper
==================  ===============  ===================================================
:mod:`.kd`          ``label``, ``kd``  Hinton, Vinyals and Dean (2015)
:mod:`.fitnets`     ``fitnets``      Romero et al. (ICLR 2015)
:mod:`.attention`   ``at``           Zagoruyko and Komodakis (ICLR 2017)
:mod:`.crd`         ``crd``          Tian, Krishnan and Isola (ICLR 2020)
:mod:`.adversarial` ``adversarial``  Xu, Hsu and Huang (2018); Wang et al. (2018)
:mod:`.sp`          ``sp``           Tung and Mori (ICCV 2019)
:mod:`.dkd`         ``dkd``          Zhao et al. (CVPR 2022)
:mod:`.dist`        ``dist``         Huang et al. (NeurIPS 2022)
:mod:`.logit_std`   ``kd-std``       Sun et al. (CVPR 2024)
==================  ===============  ===================================================

Importing this package registers them all in :data:`kdlib.terms.TERMS`. A new method is one
module here (its term class under ``@register_term("name")``) and one import line below.
Quantization is not a term but a way to build and deploy the student: :mod:`kdlib.quantize`.
"""

# one line per method: importing its module registers its term(s)
from kdlib.methods import kd  # noqa: F401
from kdlib.methods import fitnets  # noqa: F401
from kdlib.methods import attention  # noqa: F401
from kdlib.methods import crd  # noqa: F401
from kdlib.methods import adversarial  # noqa: F401
from kdlib.methods import sp  # noqa: F401
from kdlib.methods import dkd  # noqa: F401
from kdlib.methods import dist  # noqa: F401
from kdlib.methods import logit_std  # noqa: F401
from kdlib.methods.adversarial import AdversarialTerm, Discriminator
from kdlib.methods.attention import AttentionTerm, attention_map, attention_transfer_loss
from kdlib.methods.crd import CRDTerm
from kdlib.methods.dist import DISTTerm
from kdlib.methods.dkd import DKDTerm, dkd_parts
from kdlib.methods.fitnets import FitNetsTerm, hint_loss
from kdlib.methods.kd import KDTerm, LabelTerm
from kdlib.methods.logit_std import StandardizedKDTerm, standardize
from kdlib.methods.sp import SPTerm, similarity_loss

__all__ = ["AdversarialTerm", "AttentionTerm", "CRDTerm", "DISTTerm", "DKDTerm", "Discriminator", "FitNetsTerm",
           "KDTerm", "LabelTerm", "SPTerm", "StandardizedKDTerm", "attention_map", "attention_transfer_loss",
           "dkd_parts", "hint_loss", "similarity_loss", "standardize"]
