"""``hst``: Heterogeneous Semantic Transfer (Chen, Pu et al.; journal extension of SST).

The SST framework (SARL + IST + CST, see ``plugins/sst.py``) with two changes:

* **CST with prototypes** (eq. 7-11): the category-c features of the images with c as a known
  positive are clustered by K-means into K = 10 prototypes per category (an un-augmented pass
  over the training set at the first pseudo-label epoch and every 5 epochs after it); an unknown
  entry's existence score is its mean cosine similarity to the prototypes of its category. L_cst
  is the instance-level pair loss of eq. 10-11.
* **DTL** (eq. 12-15): θ_intra and θ_cross are learned scalars (starting at 1.0, i.e. no pseudo
  labels at first). The threshold differences ``d = score − θ`` of the *known* labels are scored
  by the partial BCE with ``d / τ`` as a logit, so the known labels teach the thresholds where
  existence begins. The paper gives no scale for this surrogate of ``1[score ≥ θ]``: with τ = 1
  label imbalance pushes θ above every score (no pseudo label is ever made); the default
  ``dtl_temperature`` = 0.1 puts θ where the known labels' posterior crosses ½ (tests pin both).
  Pseudo labels stay hard: ``1[score ≥ θ]`` on unknown entries.

Loss (eq. 16-18): ``L = ℓ(p, y) + ℓ(p, y^intra) + ℓ(p, y^cross) + 10 L_ist + 0.05 L_cst
+ 0.1 (L_dtl_ist + L_dtl_cst)``; the pseudo-label vectors have their known entries set to 0.
Pseudo labels (and DTL) start after 5 of 20 epochs; prototypes are recomputed every 5 epochs.
Shorter runs map that timeline onto their epochs (``schedule_scale=epochs``; an 8-epoch run
computes prototypes at epochs 2 and 4 and 6, a 1-epoch run at epoch 0), so the defaults exercise
every part of the method on the built-in dataset.

Ablations (Tables 4-7, Fig. 5): ``ablation=ist-only|ist-no-loss|ist-stat|cst-only|cst-no-loss|
cst-instance|fixed-threshold|sa|baseline``, ``num_prototypes=K``, ``fixed_threshold=θ``.
Table 8's "HST w/ FB" is ``feature_blending=true``: DSRB's IPRB + PPRB blending of the category
feature maps (``plugins/_blending/``, dsrb's defaults) with the partial BCE of the blended
predictions added to the classification loss. The paper names the combination without
specifying it; this composition is ours.
The learned thresholds are model parameters (in the checkpoint's model state); prototypes are in
the method state, so a resumed run continues with the same prototypes.
"""

from __future__ import annotations

from mlrpl_bench.hookspecs import hookimpl

from ._semantic_transfer import SemanticTransferMethod, make_options_class, paper_profile

OFFICIAL_OPTIONS = {"ist_score": "mean", "ist_loss_form": "asl", "cst_pairs": "known",
                    "dtl_form": "official", "dtl_detach_scores": False, "pseudo_target": "combined"}


class HST(SemanticTransferMethod):
    name = "hst"
    summary = "Heterogeneous semantic transfer: IST + prototype CST with learned (DTL) thresholds on SSGRL"
    citation = ("Chen, Pu et al. Heterogeneous Semantic Transfer for Multi-label Recognition with Partial Labels "
                "(journal extension of SST, AAAI 2022)")
    version = "1.0"
    Options = make_options_class("HSTOptions", cst_similarity="prototype", thresholds="dtl", pseudo_target="pseudo")
    profiles = {
        "paper": paper_profile(batch_size=32),
        "official": {**paper_profile(batch_size=32), **OFFICIAL_OPTIONS},
    }


@hookimpl
def mlrpl_methods():
    return [HST]
