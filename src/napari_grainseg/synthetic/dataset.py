"""Endless stream of synthetic samples for torch training (no dataset on disk).

This module imports torch; :mod:`napari_grainseg.synthetic` itself does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from napari_grainseg.synthetic.generator import SyntheticSample, generate
from napari_grainseg.synthetic.presets import resolve_parameters

__all__ = ["SyntheticStream", "worker_seeds"]

#: Seeds of different workers never collide while a worker yields fewer samples.
_STRIDE = 1_000_000_007


def worker_seeds(base_seed: int, worker_id: int, num_workers: int) -> Iterator[int]:
    """Endless, disjoint seed sequence of one DataLoader worker.

    Worker ``k`` of ``n`` gets ``base_seed * n_stride + k, + n, + 2n, ...`` (mod
    2**63), so workers interleave without overlap and a single-process stream
    (k = 0, n = 1) simply counts up from ``base_seed * _STRIDE``.

    Examples
    --------
    >>> from itertools import islice
    >>> list(islice(worker_seeds(0, 1, 4), 3))
    [1, 5, 9]
    """
    seed = (int(base_seed) * _STRIDE + int(worker_id)) % (1 << 63)
    while True:
        yield seed
        seed = (seed + int(num_workers)) % (1 << 63)


class SyntheticStream(IterableDataset):
    """``torch`` iterable dataset yielding ``transform(generate(seed, shape, preset, **params))``.

    Parameters
    ----------
    shape
        (height, width) of every sample.
    preset
        Generator preset (``"train"`` for training: every knob randomised).
    base_seed
        Start of the seed sequence; two streams with the same base seed and worker
        count yield identical samples.
    transform
        Callable applied to each :class:`SyntheticSample` (e.g. to build tensors);
        ``None`` yields the sample itself.
    **params
        Fixed overrides of generator knobs.

    Examples
    --------
    >>> stream = SyntheticStream((96, 496), preset="train", base_seed=3)
    >>> sample = next(iter(stream))
    >>> sample.image.shape
    (96, 496)
    """

    def __init__(self, shape: tuple[int, int] = (96, 496), preset: str = "train",
                 base_seed: int = 0,
                 transform: Callable[[SyntheticSample], Any] | None = None,
                 **params: Any) -> None:
        super().__init__()
        self.shape = tuple(int(v) for v in shape)
        self.preset = preset
        self.base_seed = int(base_seed)
        self.transform = transform
        self.params = params
        resolve_parameters(preset, np.random.default_rng(0), params)  # fail early, not in a worker

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        for seed in worker_seeds(self.base_seed, wid, nw):
            sample = generate(seed, self.shape, self.preset, **self.params)
            yield sample if self.transform is None else self.transform(sample)


def to_tensors(sample: SyntheticSample) -> tuple[torch.Tensor, torch.Tensor]:
    """Default transform: (1, H, W) float image and (1, H, W) float boundary target."""
    image = torch.from_numpy(np.ascontiguousarray(sample.image))[None]
    target = torch.from_numpy(sample.boundaries.astype(np.float32))[None]
    return image, target
