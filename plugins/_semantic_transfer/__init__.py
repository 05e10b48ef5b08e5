"""Helpers of the semantic-transfer methods SST and HST (private package, registers nothing).

* :mod:`.equations` -- the papers' equations as pure tensor functions (IST, CST, DTL, schedule);
* :mod:`.model` -- the SARL model + the IST co-occurrence head φ_intra (+ learned thresholds);
* :mod:`.options` -- the one option set of both plugins, its defaults and ablation presets;
* :mod:`.method` -- the training step, prototypes, feature bank and state.
"""

from .method import SemanticTransferMethod
from .options import ABLATIONS, HST_PAPER_LITERAL, PAPER_LITERAL, make_options_class, paper_profile, resolve_options

__all__ = ["ABLATIONS", "HST_PAPER_LITERAL", "PAPER_LITERAL", "SemanticTransferMethod", "make_options_class", "paper_profile",
           "resolve_options"]
