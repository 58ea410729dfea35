"""Deep Compression (Han et al. 2016): magnitude pruning, k-means weight sharing, Huffman coding.

Per conv/linear weight tensor: prune the smallest weights to a sparsity (iteratively,
fine-tuning in between with the masks held), cluster the survivors into ``2**bits``
shared values (k-means, linear initialisation), then Huffman-code the cluster indices
and the gaps between non-zero positions. The compressed size counts every byte needed
to restore the weights; :func:`decompress` restores them exactly. Sparse weights still
run on dense kernels, so the latency is the dense model's: the point HAKD makes::

    masks = magnitude_prune(model, 0.9)
    share_in_place(model)
    packed = compress(model, conv_bits=8, fc_bits=5)
    print(packed.size_bytes); decompress(packed, model)
"""

from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np
import torch
from torch import nn

from hakd.baselines.huffman import decode, encode, huffman_codes
from hakd.loop import Task, train_loop

__all__ = ["magnitude_prune", "apply_masks", "kmeans_share", "compress", "decompress", "CompressedModel", "CompressedTensor"]


def _weights(model: nn.Module) -> Dict[str, nn.Parameter]:
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def magnitude_prune(model: nn.Module, sparsity: float, masks: Dict[str, torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights in each conv/linear tensor; returns the masks.

    Weights already masked stay masked (iterative pruning only removes more)."""
    masks = dict(masks or {})
    with torch.no_grad():
        for name, w in _weights(model).items():
            current = masks.get(name, torch.ones_like(w, dtype=torch.bool))
            k = int(round(sparsity * w.numel()))
            if k > 0:
                threshold = w.abs().flatten().kthvalue(k).values
                current = current & (w.abs() > threshold)
            masks[name] = current
            w.mul_(current)
    return masks


def apply_masks(model: nn.Module, masks: Dict[str, torch.Tensor]) -> None:
    """Re-zero pruned weights (after an optimiser step)."""
    with torch.no_grad():
        for name, w in _weights(model).items():
            if name in masks:
                w.mul_(masks[name])


def kmeans_share(values: np.ndarray, bits: int, iterations: int = 30):
    """(centroids, index per value): 1-D k-means with linear initialisation (Han et al.)."""
    unique = np.unique(values)
    if len(unique) <= 2 ** bits:  # already shared (or few values): the values themselves, exactly
        return unique.astype(np.float32), np.searchsorted(unique, values)
    k = 2 ** bits
    centroids = np.linspace(values.min(), values.max(), k)
    for _ in range(iterations):
        edges = (centroids[1:] + centroids[:-1]) / 2
        index = np.searchsorted(edges, values)
        sums = np.bincount(index, weights=values, minlength=k)
        counts = np.bincount(index, minlength=k)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(updated, centroids):
            break
        centroids = np.sort(updated)
    edges = (centroids[1:] + centroids[:-1]) / 2
    return centroids.astype(np.float32), np.searchsorted(edges, values)


@dataclasses.dataclass
class CompressedTensor:
    shape: tuple
    count: int  # non-zero weights
    centroids: np.ndarray
    index_codes: Dict[int, str]
    index_bytes: bytes
    gap_codes: Dict[int, str]
    gap_bytes: bytes

    @property
    def size_bytes(self) -> int:
        # code tables: per symbol one byte of symbol and one of code length (canonical Huffman)
        tables = 2 * (len(self.index_codes) + len(self.gap_codes))
        return len(self.index_bytes) + len(self.gap_bytes) + self.centroids.nbytes + tables + 4 * len(self.shape) + 4


@dataclasses.dataclass
class CompressedModel:
    tensors: Dict[str, CompressedTensor]
    dense_bytes: int  # everything else (biases, BatchNorm) stored as float32

    @property
    def size_bytes(self) -> int:
        return self.dense_bytes + sum(t.size_bytes for t in self.tensors.values())


def _compress_tensor(w: torch.Tensor, bits: int) -> CompressedTensor:
    flat = w.detach().flatten().double().numpy()
    positions = np.flatnonzero(flat)
    centroids, index = kmeans_share(flat[positions], bits)
    gaps = np.diff(np.concatenate([[-1], positions])) - 1  # zeros skipped before each non-zero
    icodes, gcodes = huffman_codes(index.tolist()), huffman_codes(gaps.tolist())
    return CompressedTensor(tuple(w.shape), len(positions), centroids, icodes, encode(index.tolist(), icodes),
                            gcodes, encode(gaps.tolist(), gcodes))


def compress(model: nn.Module, conv_bits: int = 8, fc_bits: int = 5) -> CompressedModel:
    """Weight-share and Huffman-code every conv/linear weight; other parameters stay float32."""
    tensors = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            tensors[f"{name}.weight"] = _compress_tensor(m.weight, conv_bits if isinstance(m, nn.Conv2d) else fc_bits)
    weight_ids = {id(p) for p in _weights(model).values()}
    dense = sum(4 * p.numel() for p in model.parameters() if id(p) not in weight_ids)
    dense += sum(4 * b.numel() for n, b in model.named_buffers() if "running" in n)
    return CompressedModel(tensors, dense)


def decompress(packed: CompressedModel, model: nn.Module) -> None:
    """Write the shared weights back into ``model`` (which then equals the quantised model exactly)."""
    weights = _weights(model)
    with torch.no_grad():
        for name, t in packed.tensors.items():
            index = np.array(decode(t.index_bytes, t.index_codes, t.count), dtype=np.int64)
            gaps = np.array(decode(t.gap_bytes, t.gap_codes, t.count), dtype=np.int64)
            positions = np.cumsum(gaps + 1) - 1
            flat = np.zeros(int(np.prod(t.shape)), dtype=np.float32)
            flat[positions] = t.centroids[index]
            weights[name].copy_(torch.from_numpy(flat.reshape(t.shape)))


def share_in_place(model: nn.Module, conv_bits: int = 8, fc_bits: int = 5) -> None:
    """Replace each conv/linear weight by its k-means centroids (what :func:`compress` encodes)."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                flat = m.weight.detach().flatten().double().numpy()
                pos = np.flatnonzero(flat)
                if len(pos):
                    centroids, index = kmeans_share(flat[pos], conv_bits if isinstance(m, nn.Conv2d) else fc_bits)
                    flat = np.zeros_like(flat, dtype=np.float32)
                    flat[pos] = centroids[index]
                    m.weight.copy_(torch.from_numpy(flat.reshape(m.weight.shape)))


__all__.append("share_in_place")


class _Masked(Task):
    """Fine-tune with pruned weights held at zero, for a number of steps."""

    name = "deep compression fine-tuning"

    def __init__(self, model: nn.Module, masks: Dict[str, torch.Tensor], steps: int):
        self.model, self.masks, self.steps = model, masks, steps

    def after_step(self, pos) -> bool:
        apply_masks(self.model, self.masks)
        return False

    def finished(self, pos) -> bool:
        return pos.step >= self.steps


class _From:
    """A loader whose epochs start at ``first`` (each stage sees new shuffles, as one long run would)."""

    def __init__(self, loader, first: int):
        self.loader, self.first = loader, first

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(self.first + epoch)


def prune_and_finetune(model: nn.Module, train, schedule=(0.5, 0.75, 0.9), steps_per_stage: int = 200,
                       lr: float = 0.01, batch_size: int = 128, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Han et al.'s iterative pruning: for each sparsity, prune by magnitude then fine-tune
    ``steps_per_stage`` SGD steps with the pruned weights held at zero (on the one training
    loop, :mod:`hakd.loop`). Returns the masks."""
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    loader = train.loader(batch_size, seed=seed)
    masks, epoch = None, 0
    for sparsity in schedule:
        masks = magnitude_prune(model, sparsity, masks)
        pos = train_loop(model, optimizer, _From(loader, epoch), _Masked(model, masks, steps_per_stage), None,
                         progress=False)
        epoch += pos.epoch + (1 if pos.batch else 0)  # a stage that stops inside an epoch leaves the rest of it
    return masks


__all__.append("prune_and_finetune")
