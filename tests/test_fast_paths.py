"""The speed-ups that must not change a result: each fast path against the straightforward
computation it replaces, compared bit for bit (values, gradients, random-number streams)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlrpl_bench.data.loading import ArrayRows, EpochShuffleSampler, IndexBatchLoader, collate_batch, make_loader
from mlrpl_bench.plugins._sarl.losses import category_contrastive_loss, full_grid_sampled_contrastive


# Bit for bit at one intra-op thread, the count a CPU run uses (``--threads`` defaults to 1): with
# several threads torch splits the gathers' backward sums differently in the two computations.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _labels(b, c, known, seed):
    g = torch.Generator().manual_seed(seed)
    signs = torch.where(torch.rand(b, c, generator=g) < 0.3, 1.0, -1.0)
    return signs * (torch.rand(b, c, generator=g) < known)


@pytest.mark.parametrize("known", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("batch", [2, 7, 32, 64])
def test_sampled_contrastive_on_known_entries_is_bit_identical_to_the_full_grid(known, batch):
    torch.manual_seed(batch)
    base = torch.randn(batch, 20, 16) * 10 ** torch.randn(batch, 20, 1)
    base[0, 3] = 0.0  # a zero feature vector (the eps clamp)
    labels = _labels(batch, 20, known, seed=batch)
    results = []
    for loss_fn in (full_grid_sampled_contrastive, None):
        x = base.clone().requires_grad_()
        features = torch.tanh(x) * 3
        # The features feed terms made before and after the loss too, as in a training step: the
        # gradients reaching them are summed in an order that the rounding depends on.
        before = (features.sum(dim=1, keepdim=True) * features).mean()
        gen = torch.Generator().manual_seed(7)
        if loss_fn is None:
            loss = category_contrastive_loss(features, labels, "sampled", gen)
        else:
            loss = loss_fn(features, labels, gen)
        after = torch.einsum("bcd,bcd->", features, features.flip(0)) / 1000
        (before + 10 * loss + after).backward()
        results.append((loss.detach(), x.grad, gen.get_state()))
    (ref_loss, ref_grad, ref_gen), (loss, grad, gen_state) = results
    assert torch.equal(loss, ref_loss)
    assert torch.equal(grad, ref_grad)
    assert torch.equal(gen_state, ref_gen)  # the same draws: later steps see the same stream


def test_index_batches_equal_the_dataloader_batches_and_leave_the_same_global_rng_state():
    rng = np.random.default_rng(0)
    array = rng.standard_normal((50, 4, 2, 2)).astype(np.float32)
    rows = rng.permutation(50)[:37]
    labels = rng.integers(-1, 2, size=(37, 5)).astype(np.int8)
    fast = ArrayRows(array, labels, rows)
    for sampler, drop_last in ((EpochShuffleSampler(37, seed=3), False), (list(range(1, 37, 2)), True),
                               (range(37), False)):
        torch.manual_seed(11)
        reference = list(torch.utils.data.DataLoader(fast, batch_size=8, sampler=sampler, collate_fn=collate_batch,
                                                     drop_last=drop_last))
        after_reference = torch.get_rng_state()
        torch.manual_seed(11)
        loader = make_loader(fast, sampler, 8, drop_last=drop_last)
        assert isinstance(loader, IndexBatchLoader)
        batches = list(loader)
        assert torch.equal(torch.get_rng_state(), after_reference)
        assert len(batches) == len(reference) == len(loader)
        for (got, bad), (want, want_bad) in zip(batches, reference):
            assert bad == want_bad == []
            assert torch.equal(got.inputs, want.inputs) and got.inputs.dtype == torch.float32
            assert torch.equal(got.labels, want.labels) and torch.equal(got.indices, want.indices)
    # the rows are those of the array the view names
    assert torch.equal(fast.take([0, 5]).inputs, torch.from_numpy(array[rows[[0, 5]]]))


def test_bank_update_of_all_classes_at_once_equals_the_per_class_loop():
    from mlrpl_bench.plugins._semantic_transfer.method import SemanticTransferMethod

    def loop_update(bank, features, labels, size):
        bank = bank.clone()
        pos = labels > 0
        for cls in pos.any(dim=0).nonzero(as_tuple=True)[0].tolist():
            new = features[pos[:, cls], cls]  # batch order, as model/SST.py updateFeature
            bank[cls] = torch.cat([new, bank[cls]])[:size]
        return bank

    class Holder:  # update_bank reads only opts.bank_size and the bank
        class opts:
            bank_size = 5
        bank = None

    holder, reference = Holder(), torch.zeros(4, 5, 3)
    g = torch.Generator().manual_seed(0)
    for batch in (3, 8, 1, 6):  # fewer and more positives than slots, classes without any
        features = torch.randn(batch, 4, 3, generator=g)
        labels = _labels(batch, 4, 0.8, seed=batch)
        labels[:, 2] = -1.0
        SemanticTransferMethod.update_bank(holder, features, labels)
        reference = loop_update(reference, features, labels, 5)
        assert torch.equal(holder.bank, reference)
