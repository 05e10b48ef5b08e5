"""The blending a method carries through training (private module, registers nothing).

:class:`RepresentationBlender` owns everything of DSRB's instance- and prototype-perspective
blending that lives *across* training steps: when blending starts, when the PPRB prototypes are
(re)computed and from what, the ``blend`` callable a :class:`~.model.BlendCoefficients`
model runs inside its forward, the classification loss of the blended predictions, and the
checkpoint state. ``dsrb`` is built on it, and so is the "HST w/ FB" variant of the semantic
transfer methods (``-o feature_blending=true``), which adds the same blending to HST.

The pure functions (eq. 6–13) are in :mod:`.functions`, the model in :mod:`.model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlrpl_bench.errors import BenchError
from mlrpl_bench.models.sarl import unwrap

from .functions import (first_seen, iprb_blend, kmeans_vector_prototypes, map_prototype_sums, pick_prototype_index,
                        pprb_blend, pprb_select, prototypes_from_sums, region_index, soft_partial_bce)


def quarter_of(epochs: int) -> int:
    """The automatic schedule value: a quarter of the epochs, rounded (5 of the paper's 20)."""
    return int(round(epochs / 4))


@dataclass
class BlendSettings:
    """What to blend and when (built from validated options; the defaults are dsrb's).

    ``start_epoch`` / ``prototype_interval`` of -1 mean a quarter of the run's epochs (the paper's
    5 of 20). ``prototype_maps``: ``official`` = at most ``prototype_cap`` maps per (class, region),
    those of the first images of a random order, each region's mean counting one zero map (the
    official ``computePrototype_featuremap``); ``all`` = the mean of every known positive's map.
    ``coefficient_decay``: ``shared`` = α, β in the weights' Adam group (weight decay applies in
    the steps where they take part, as in the official code); ``separate`` = their own group
    without weight decay. ``reduction``: the reduction of the blended partial BCE
    (:func:`.functions.soft_partial_bce`).
    """

    modules: str = "both"
    space: str = "maps"
    region_k: int = 1
    vector_prototypes: int = 10
    pprb_per_image: int = 1
    start_epoch: int = -1
    prototype_interval: int = -1
    prototype_maps: str = "official"
    prototype_cap: int = 100
    coefficients: str = "scalar"
    coefficient_decay: str = "shared"
    reduction: str = "entries"


class RepresentationBlender:
    """IPRB + PPRB across a run: schedule, prototypes, the blend callable, loss and state.

    :param settings: :class:`BlendSettings` (checked by the caller).
    :param ctx: the method's :class:`~mlrpl_bench.method.MethodContext`.
    :param sarl: the model's ``sarl`` kind (``sd`` sums its maps, which matters when prototypes
        are resized to another map size).
    :param owner: the method's name, for checkpoint errors.
    """

    #: Blend maps by blending their pooled vectors (see :meth:`blend_fn`); ``False`` blends the
    #: ``(B, C, D, h, w)`` maps and pools them, the layer-by-layer form (reference of
    #: tests/test_dsrb.py and perf/bench_sarl_cost.py).
    pool_first: bool = True

    def __init__(self, settings: BlendSettings, ctx, sarl: str, owner: str):
        self.settings = settings
        self.ctx = ctx
        self.sarl = sarl
        self.owner = owner
        self.use_iprb = settings.modules in ("both", "iprb")
        self.use_pprb = settings.modules in ("both", "pprb")
        auto = quarter_of(ctx.epochs)
        self.start_epoch = settings.start_epoch if settings.start_epoch >= 0 else auto
        self.prototype_interval = settings.prototype_interval if settings.prototype_interval > 0 else max(1, auto)
        self.prototypes = torch.zeros(0)
        self.prototype_valid = torch.zeros(0, dtype=torch.bool)
        self.prototype_epoch = -1

    # -- schedule -------------------------------------------------------------------------------

    def active(self, epoch: int) -> bool:
        """Whether ``epoch`` trains on blended representations."""
        return self.settings.modules != "none" and epoch >= self.start_epoch

    def prototypes_due(self, epoch: int) -> bool:
        """Whether the prototypes are (re)computed at the start of ``epoch``."""
        if not self.use_pprb or epoch < self.start_epoch:
            return False
        if self.prototype_epoch < 0:  # never computed (or resumed without them)
            return True
        return (epoch - self.start_epoch) % self.prototype_interval == 0 and epoch != self.prototype_epoch

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        if self.prototypes_due(epoch):
            self.compute_prototypes(model, epoch)
            self.prototype_epoch = epoch

    # -- optimisation ---------------------------------------------------------------------------

    def parameter_groups(self, model: nn.Module, others: tuple[nn.Parameter, ...] = ()) -> list[dict[str, Any]]:
        """Adam parameter groups of a blending model, leaving out ``others``.

        ``shared`` (official): one group, α and β decayed like every weight -- but only in the
        steps where they take part: before blending (and β with ``modules=iprb``) they get no
        gradient at all, and Adam skips a parameter without gradient. ``separate``: α and β in
        their own group without weight decay (the bounded mixing ratios are not weights).
        """
        net = unwrap(model)
        exclude = {id(net.alpha), id(net.beta)} | {id(p) for p in others}
        weights = [p for p in model.parameters() if p.requires_grad and id(p) not in exclude]
        coefficients = [p for p in (net.alpha, net.beta) if p.requires_grad]
        if self.settings.coefficient_decay == "shared":
            return [{"params": weights + coefficients}]
        groups: list[dict[str, Any]] = [{"params": weights}]
        if coefficients:
            groups.append({"params": coefficients, "weight_decay": 0.0})
        return groups

    def keep_coefficients_in_graph(self, model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """With ``separate`` coefficient decay, ``loss + 0·(α, β)``: before blending starts (β never,
        with ``modules=iprb``) α and β take no part; a zero-weighted term gives them a zero gradient
        instead of none, so that every process has the same set of gradients to all-reduce. With
        ``shared`` decay the loss is returned unchanged: a zero gradient would let Adam apply the
        weight decay in steps where the official code's α and β have no gradient."""
        if self.settings.coefficient_decay == "shared":
            return loss
        net = unwrap(model)
        return loss + 0.0 * (net.alpha.sum() + net.beta.sum())

    # -- prototypes -----------------------------------------------------------------------------

    @torch.no_grad()
    def compute_prototypes(self, model: nn.Module, epoch: int = 0) -> None:
        """Prototypes from an un-augmented pass over the training set (known positives only; the
        official code walks its augmented training loader, this harness offers an un-augmented
        pass). ``epoch`` seeds the random order of the ``official`` map prototypes."""
        net = unwrap(model)
        was_training = net.training
        net.eval()
        try:
            if self.settings.space == "maps":
                self._map_prototypes(net, epoch)
            else:
                self._vector_prototypes(net)
        finally:
            net.train(was_training)

    def _map_prototypes(self, net: nn.Module, epoch: int) -> None:
        official = self.settings.prototype_maps == "official"
        keep = self._first_seen_positives(net, epoch) if official else None
        sums = counts = None
        for batch in self.ctx.feature_batches():
            maps = net.category_maps(batch.inputs)[0]
            labels = batch.labels
            if keep is not None:
                labels = keep[batch.indices.cpu()].to(labels.device).to(labels.dtype)
            s, c = map_prototype_sums(maps, labels, self.settings.region_k)
            sums = s if sums is None else sums + s
            counts = c if counts is None else counts + c
        if sums is None:
            return
        # Every process saw its own shard: add the shards' sums and counts.
        sums = self.ctx.all_gather(sums.unsqueeze(0)).sum(dim=0)
        counts = self.ctx.all_gather(counts.unsqueeze(0)).sum(dim=0)
        self.prototypes, self.prototype_valid = prototypes_from_sums(sums, counts, zero_map=official)

    def _first_seen_positives(self, net: nn.Module, epoch: int) -> torch.Tensor:
        """``(N, C)`` bool: the known positives whose maps the official pass keeps (at most
        ``prototype_cap`` per class and region, the first images of a random order; see
        :func:`.functions.first_seen`). The order is drawn from the run's seed and the epoch, the
        same on every process."""
        rows, classes, regions = [], [], []
        for batch in self.ctx.feature_batches():
            maps = net.category_maps(batch.inputs)[0]
            region = region_index(maps, self.settings.region_k).cpu()
            pos = (batch.labels == 1).cpu()
            r, c = pos.nonzero(as_tuple=True)
            rows.append(batch.indices.cpu()[r])
            classes.append(c)
            regions.append(region[r, c])
        n, num_classes = self.ctx.train_labels.shape
        keep = torch.zeros(n, num_classes, dtype=torch.bool)
        if not rows:
            return keep
        rows_t = self.ctx.all_gather(torch.cat(rows)).cpu()
        classes_t = self.ctx.all_gather(torch.cat(classes)).cpu()
        regions_t = self.ctx.all_gather(torch.cat(regions)).cpu()
        order = torch.Generator().manual_seed(int(self.ctx.seed) * 1_000_003 + max(epoch, 0))
        keys = torch.rand(n, generator=order)
        groups = classes_t * 4**self.settings.region_k + regions_t
        chosen = first_seen(keys, rows_t, groups, self.settings.prototype_cap)
        keep[rows_t[chosen], classes_t[chosen]] = True
        return keep

    def _vector_prototypes(self, net: nn.Module) -> None:
        per_class: list[list[np.ndarray]] = [[] for _ in range(self.ctx.num_classes)]
        dim = None
        for batch in self.ctx.feature_batches():
            features = net.category_maps(batch.inputs)[1].float().cpu()
            dim = features.shape[-1]
            pos = (batch.labels == 1).cpu()
            for c in range(self.ctx.num_classes):
                if pos[:, c].any():
                    per_class[c].append(features[pos[:, c], c].numpy())
        if dim is None:
            return
        # Under distributed training each process clusters its own shard (sizes differ per class).
        vectors = [np.concatenate(v) if v else np.zeros((0, dim), np.float32) for v in per_class]
        protos, valid = kmeans_vector_prototypes(vectors, self.settings.vector_prototypes, self.ctx.seed, dim)
        self.prototypes, self.prototype_valid = protos.to(self.ctx.device), valid.to(self.ctx.device)

    def _prototypes_like(self, reps: torch.Tensor) -> torch.Tensor:
        """The prototypes on ``reps``' device and, for maps, at its spatial size (the un-augmented
        pass may see another resolution); the sum pooling of SD is kept by rescaling."""
        protos = self.prototypes.to(device=reps.device, dtype=reps.dtype)
        if protos.dim() == 5 and protos.shape[-2:] != reps.shape[-2:]:
            c, q, d, h, w = protos.shape
            nh, nw = reps.shape[-2:]
            resized = F.interpolate(protos.reshape(c * q, d, h, w), size=(nh, nw), mode="bilinear", align_corners=False)
            if self.sarl == "sd":
                resized = resized * (h * w) / (nh * nw)
            protos = resized.reshape(c, q, d, nh, nw)
        return protos

    # -- training -------------------------------------------------------------------------------

    def blend_fn(self, labels: torch.Tensor) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, Any]]:
        """The callable a blending model runs inside its forward: ``fn(net, maps, features)``
        returns ``{module: (blended category vectors, blended labels, mask of the blended
        entries)}``; the model's ``forward_blended`` classifies the vectors (with the images' own
        features, in one batch) and hands back ``{module: (logits, labels, mask)}``.

        With ``space=maps`` the maps decide where each image's object is (PPRB's region, from the
        maps themselves), but what is blended is their pooling: the pooling σ is linear and each
        coefficient is one number per (image, category), so ``σ(a F + (1 − a) G) = a σ(F) + (1 −
        a) σ(G)`` with ``σ(F) = f`` the category features and ``σ(P)`` the pooled prototypes. The
        same vectors and gradients as blending the ``(B, C, D, h, w)`` maps and pooling them
        (:attr:`pool_first` ``False``), without the map-sized products and their backward;
        the sums run in another order, so floats move by rounding."""
        s = self.settings
        gen = self.ctx.generator
        pooled = s.space == "maps" and self.pool_first

        def run(net: nn.Module, maps: torch.Tensor, features: torch.Tensor) -> dict[str, Any]:
            reps = maps if s.space == "maps" and not pooled else features
            pending: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # module -> (vectors, labels, mask)
            if self.use_iprb:
                blended, blended_labels, mask = iprb_blend(reps, labels, net.alpha)
                vec = net.pool(blended) if reps is maps else blended
                pending["iprb"] = (vec, blended_labels, mask)
            if self.use_pprb and self.prototype_valid.numel() and bool(self.prototype_valid.any()):
                selected = pprb_select(labels, self.prototype_valid, s.pprb_per_image, gen)
                n_protos = self.prototypes.shape[1]
                if s.space == "maps":
                    own = region_index(maps.detach(), s.region_k)
                    k = pick_prototype_index(own, n_protos, avoid_own=True, generator=gen)
                else:
                    k = pick_prototype_index(torch.zeros_like(labels, dtype=torch.long), n_protos, avoid_own=False, generator=gen)
                prototypes = self._prototypes_like(maps if s.space == "maps" else reps)
                if pooled:
                    prototypes = net.pool(prototypes)  # (C, Q, D)
                blended, blended_labels = pprb_blend(reps, labels, net.beta, prototypes, selected, k)
                vec = net.pool(blended) if reps is maps else blended
                pending["pprb"] = (vec, blended_labels, selected)
            return pending

        return run

    def blended_loss(self, blended: dict[str, Any] | None, like: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(Σ_modules eq. 14 on the blended predictions, logs)``: the partial BCE of each module's
        blended predictions with their soft labels, reduced as ``settings.reduction`` says (0, of
        ``like``'s dtype and device, without blending)."""
        loss = like.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for key, (logits, blended_labels, mask) in (blended or {}).items():
            loss = loss + soft_partial_bce(logits, blended_labels, reduction=self.settings.reduction)
            logs[f"{key}_blended"] = mask.float().sum(dim=1).mean().detach()
        return loss, logs

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"prototypes": self.prototypes.detach().cpu().clone(), "prototype_valid": self.prototype_valid.cpu().clone(),
                "prototype_epoch": int(self.prototype_epoch), "space": self.settings.space}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        protos, valid = state.get("prototypes"), state.get("prototype_valid")
        where = f"{self.owner} checkpoint"
        if not isinstance(protos, torch.Tensor) or not isinstance(valid, torch.Tensor):
            raise BenchError(f"{where}: method state lacks 'prototypes'/'prototype_valid' tensors; resume from a {self.owner} checkpoint")
        if state.get("space", self.settings.space) != self.settings.space:
            raise BenchError(f"{where}: prototypes were built with space={state.get('space')!r}, "
                             f"this run uses space={self.settings.space!r}; resume with the same option")
        if protos.numel() and (protos.shape[0] != self.ctx.num_classes or valid.shape != (self.ctx.num_classes,)):
            raise BenchError(f"{where}: prototypes for {protos.shape[0]} classes, the dataset has {self.ctx.num_classes}; "
                             f"resume with the same dataset")
        self.prototypes = protos.to(self.ctx.device)
        self.prototype_valid = valid.bool().to(self.ctx.device)
        self.prototype_epoch = int(state.get("prototype_epoch", -1))
