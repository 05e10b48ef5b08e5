"""Named random streams derived from a run's seed: one home for how a seed becomes RNG state.

Why streams: a run's seed (0, 1, 2, ...) is a small integer, and so are the seeds that scripts such
as ``tools/pretrain_backbone.py`` use. Seeding torch with the run's seed directly made seed 0 of
every run replay the pretraining script's initialisation: the same construction order on the same
seed drew the linear head of the shipped backbone's own pretraining classifier, which the backbone
had co-adapted with (an untrained head at seed 0 scored 83.6 validation mAP, seeds 1 and 2 scored
14-17). A derived stream cannot coincide with a raw seed:

* :func:`stream_seed` hashes ``(seed, stream name)`` with SHA-256 and maps the digest into
  ``[RAW_SEED_LIMIT, 2**63)``; raw seeds (what scripts pass to ``torch.manual_seed`` themselves,
  and every run seed the CLI accepts) are below ``RAW_SEED_LIMIT``, so no derived stream equals
  any of them, for any seed;
* two streams of one seed, or one stream of two seeds, differ unless SHA-256 collides.

The run's streams: :data:`MODEL_STREAM` seeds torch's global RNG before the method, the backbone
and the model are built (every initial parameter a method draws), and :data:`METHOD_STREAM` seeds
the method's own ``ctx.generator`` until the engine reseeds it at each epoch.
"""

from __future__ import annotations

import hashlib

import torch

#: Raw seeds (run seeds, scripts' fixed seeds) live below this; derived streams live at or above it.
RAW_SEED_LIMIT = 2**32
#: The stream that initialises the method's parameters (head, prototypes, thresholds, ...).
MODEL_STREAM = "model-init"
#: The stream of the method's own generator (``MethodContext.generator``) before the first epoch.
METHOD_STREAM = "method-generator"


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed in ``[RAW_SEED_LIMIT, 2**63)`` for the named stream of ``seed``.

    >>> stream_seed(0, "model-init") >= RAW_SEED_LIMIT
    True
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    digest = hashlib.sha256(f"mlrpl-bench/{stream}/{seed}".encode()).digest()
    value = int.from_bytes(digest[:8], "big") % (2**63 - RAW_SEED_LIMIT)
    return RAW_SEED_LIMIT + value


def seed_model_init(seed: int) -> int:
    """Seed torch's global RNG with the run's model-initialisation stream; returns the seed used."""
    derived = stream_seed(seed, MODEL_STREAM)
    torch.manual_seed(derived)
    return derived


def method_generator(seed: int) -> torch.Generator:
    """The method's own generator, seeded from the run's method stream."""
    return torch.Generator().manual_seed(stream_seed(seed, METHOD_STREAM))
