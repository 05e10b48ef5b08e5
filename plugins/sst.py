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
0.75 (mapped onto shorter runs, see ``schedule_scale``).

The defaults are the official code's (SST.py, model/SST.py, loss/SST.py, scripts/SST.sh; see
``docs/fidelity.md``): φ_intra per unordered pair with one classifier each, the IST score is the
mean over the known positives, L_ist is ASL with the shifted probability, the set D_c of eq. 6 is
a bank of the 100 latest known-positive features per class (empty slots count as zero vectors),
L_cst scores pairs with both labels known with negatives subsampled, L_ist and L_cst ramp up over
the first epoch, and the partial BCE is the mean over the batch's known entries.
``--profile paper-literal`` selects the paper's text for each of these. Ablations of Table 2:
``ablation=ist-only|ist-no-loss|ist-stat|cst-only|cst-no-loss|sa|baseline``. Profiles: ``paper``
(the paper's recipe, batch 32), ``official`` (the script's recipe, batch 8), ``paper-literal``.
``paper`` and ``official`` train as the official code does: images with the official bicubic
augmentation, ResNet-101 with its 2x2 pool after layer4 (``resnet101-pool2``), layers 1-3 frozen
and layer4 trained, fp32 (``docs/fidelity.md``, "Training").

Default (no profile) sizes for CPU: category features D = the backbone's channels (128 for
the small CNN, no reduction), SD hidden D/2, classifier input D, φ_intra hidden (D/2, D) -- the
paper's 1024/512/1024/(512, 1024) scaled by D/1024.
"""

from __future__ import annotations

from mlrpl_bench.hookspecs import hookimpl

from ._semantic_transfer import PAPER_LITERAL, SemanticTransferMethod, make_options_class, paper_profile


class SST(SemanticTransferMethod):
    name = "sst"
    summary = "Structured semantic transfer: IST co-occurrence + CST similarity pseudo labels on SSGRL"
    citation = ("Chen, Pu, Wu, Xie, Lin. Structured Semantic Transfer for Multi-Label Recognition with Partial Labels. "
                "AAAI 2022")
    # 2.0: the official code's behaviour is the default (docs/fidelity.md); 2.1: the bank takes a
    # batch's features in the official order (eviction differs once a class's bank is full).
    version = "2.1"
    Options = make_options_class("SSTOptions", cst_similarity="instance", thresholds="schedule")
    profiles = {
        "paper": paper_profile(batch_size=32),
        "official": paper_profile(batch_size=8),
        "paper-literal": dict(PAPER_LITERAL),
    }


@hookimpl
def mlrpl_methods():
    return [SST]
