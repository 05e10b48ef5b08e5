"""``sst``: Structured Semantic Transfer (Chen, Pu et al., AAAI 2022).

SARL (semantic decoupling + GGNN, the SSGRL model) learns category-specific features ``f_c``.
Two modules turn known labels into positive pseudo labels for unknown entries:

* **IST** (eq. 1-4): φ_intra predicts an image-specific co-occurrence matrix from pairs of
  category features; an unknown category whose co-occurrence with the known positives reaches
  θ_intra becomes a pseudo positive. φ_intra is trained with an asymmetric pair loss L_ist.
* **CST** (eq. 5-8): the category-c feature of an image is compared (cosine) with the
  category-c features of the images having c as a known positive; a mean similarity of at least
  θ_cross gives a pseudo positive. A pair loss L_cst pulls same-positive features together.

Loss (eq. 9-11): ``L = ℓ(p, y) + ℓ(p, ŷ) + ℓ(p, ỹ) + 10 L_ist + 0.05 L_cst`` with partial BCE ℓ.
Thresholds: no pseudo labels for 5 of 20 epochs, then 0.95 decreasing by 0.025 per epoch to
0.75 (mapped onto shorter runs, see ``schedule_scale``). The set D_c of eq. 6 is the images
of the batch (paper); ``cst_reference=bank`` keeps the 100 latest positives per class instead
(official code). Ablations of Table 2: ``ablation=ist-only|ist-no-loss|ist-stat|cst-only|
cst-no-loss|sa|baseline``. Profiles: ``paper`` (the paper's recipe, batch 32) and ``official``
(the released code's batch 8 and its choices where it departs from the paper).

Default (no profile) sizes for CPU: category features D = the backbone's channels (128 for
the small CNN, no reduction), SD hidden D/2, classifier input D, φ_intra hidden (D/2, D) -- the
paper's 1024/512/1024/(512, 1024) scaled by D/1024.
"""

from __future__ import annotations

from mlrpl_bench.hookspecs import hookimpl

from ._semantic_transfer import SemanticTransferMethod, make_options_class, paper_profile

OFFICIAL_OPTIONS = {"ist_score": "mean", "ist_loss_form": "asl", "cst_reference": "bank",
                    "cst_pairs": "known"}


class SST(SemanticTransferMethod):
    name = "sst"
    summary = "Structured semantic transfer: IST co-occurrence + CST similarity pseudo labels on SSGRL"
    citation = ("Chen, Pu, Wu, Xie, Lin. Structured Semantic Transfer for Multi-Label Recognition with Partial Labels. "
                "AAAI 2022")
    version = "1.0"
    Options = make_options_class("SSTOptions", cst_similarity="instance", cst_reference="batch", thresholds="schedule",
                                 pseudo_target="combined")
    profiles = {
        "paper": paper_profile(batch_size=32),
        "official": {**paper_profile(batch_size=8), **OFFICIAL_OPTIONS},
    }


@hookimpl
def mlrpl_methods():
    return [SST]
