"""The one k-means of the suite: scikit-learn's ``KMeans``, as the official HST/SARB code uses it.

The official code calls ``KMeans(n_clusters=K).fit(features)`` with scikit-learn's defaults of
its time (k-means++ seeding, ``n_init=10``) and no seed; here the seed is the run's, so a run is
reproducible.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def kmeans_centres(x: torch.Tensor | np.ndarray, k: int, seed: int, n_init: int = 10) -> torch.Tensor:
    """``min(k, n)`` Euclidean K-means centres of the rows of ``x`` ``(n, D)``, float32 ``(k', D)``.

    With ``n <= k`` the points themselves are the centres (the official code would fail there);
    with ``n = 0`` the result is empty.
    """
    from sklearn.cluster import KMeans  # heavy import, only when prototypes are computed

    data = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    n = data.shape[0]
    if n <= k:
        return torch.from_numpy(data.copy())
    with warnings.catch_warnings():
        # Duplicate points may leave fewer distinct clusters than k; the centres are still valid.
        warnings.simplefilter("ignore")
        centres = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(data).cluster_centers_
    return torch.from_numpy(centres.astype(np.float32))
