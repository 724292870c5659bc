"""Contrastive losses: SimCLR's NT-Xent and MoCo-v2's InfoNCE with a key queue.

Both losses L2-normalise their embeddings and compute the similarity logits in (at least)
float32 with autocast switched off, so they are safe to call on bf16 / fp16 features produced
under ``torch.autocast``. The returned loss is float32 (float64 if the inputs are float64).

SimCLR, one step::

    >>> import torch
    >>> from amortinv.losses import nt_xent
    >>> z1, z2 = torch.randn(8, 32), torch.randn(8, 32)   # projections of two views
    >>> loss = nt_xent(z1, z2, temperature=0.5)

MoCo-v2, one step (the paper keeps one queue per invariance corner)::

    >>> from amortinv.losses import KeyQueue, info_nce, momentum_update
    >>> online, target = torch.nn.Linear(16, 32), torch.nn.Linear(16, 32)
    >>> momentum_update(online, target, m=0.0)             # start the target as a copy
    >>> queues = KeyQueue(num_queues=3, size=64, dim=32)
    >>> x1, x2, corner = torch.randn(8, 16), torch.randn(8, 16), 1
    >>> q = online(x1)
    >>> with torch.no_grad():
    ...     k = target(x2)
    >>> loss = info_nce(q, k, queues.keys(corner), temperature=0.1)
    >>> loss.backward()
    >>> queues.enqueue(k, corner)
    >>> momentum_update(online, target, m=0.99)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["KeyQueue", "NTXentLoss", "info_nce", "momentum_update", "nt_xent"]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _normalised(x: Tensor) -> Tensor:
    """L2-normalise rows in float32 or wider (float64 stays float64)."""
    return F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5, *,
            across_processes: bool = False) -> Tensor:
    """SimCLR's NT-Xent loss, symmetric over the 2N views.

    Row ``n`` of ``z1`` and row ``n`` of ``z2`` are the two views of sample ``n``. Each of the
    2N embeddings is an anchor: its positive is the other view of the same sample and its
    negatives are the remaining 2N - 2 embeddings. With cosine similarities ``s``::

        loss_i = -log( exp(s_i,pos / t) / sum_{j != i} exp(s_ij / t) )

    averaged over the 2N anchors. Embeddings are L2-normalised here, so their scale does not
    matter; logits are computed in float32 with autocast off.

    Args:
        z1: (N, D) embeddings of the first views.
        z2: (N, D) embeddings of the second views. N must be at least 2: with one sample there
            are no negatives and the loss is identically zero.
        temperature: softmax temperature t > 0.
        across_processes: in data-parallel training (an initialised process group of W > 1),
            take the negatives from every process's batch, as one batch of N * W samples
            would: the anchors stay this process's 2N, the keys are all 2NW embeddings
            (gathered with their gradients). Averaged over the processes, as DDP averages
            gradients, this is the loss and gradient of the whole batch.

    Returns:
        Scalar loss (float32, or float64 for float64 inputs).

    Example::

        >>> z1, z2 = torch.randn(8, 32), torch.randn(8, 32)
        >>> nt_xent(z1, z2, temperature=0.5).shape
        torch.Size([])
    """
    _check_temperature(temperature)
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both be (N, D) with the same shape, got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}; flatten or pool the features first"
        )
    n = z1.shape[0]
    if n < 2:
        raise ValueError(
            f"NT-Xent needs a batch of at least 2 samples to have negatives, got N={n}"
        )
    with torch.autocast(device_type=z1.device.type, enabled=False):
        a1, a2 = _normalised(z1), _normalised(z2)
        rank, world, k1, k2 = 0, 1, a1, a2
        if across_processes and dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
            if world > 1:
                k1, k2 = (torch.cat(dist_nn.all_gather(a)) for a in (a1, a2))
        logits = torch.cat([a1, a2]) @ torch.cat([k1, k2]).T / temperature  # (2N, 2NW)
        mine = rank * n + torch.arange(n, device=a1.device)  # this process's rows among keys
        own = torch.cat([mine, mine + n * world])  # each anchor's own column
        logits = logits.index_put((torch.arange(2 * n, device=a1.device), own),
                                  torch.tensor(float("-inf"), dtype=logits.dtype,
                                               device=a1.device))
        positives = own.roll(n)  # view 1 of sample i <-> view 2 of sample i
        return F.cross_entropy(logits, positives)


class NTXentLoss(nn.Module):
    """Module wrapper around :func:`nt_xent`.

    Example::

        >>> criterion = NTXentLoss(temperature=0.5)
        >>> loss = criterion(torch.randn(8, 32), torch.randn(8, 32))
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = temperature

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        return nt_xent(z1, z2, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.1) -> Tensor:
    """MoCo-v2's InfoNCE loss of queries against their keys and a queue of negative keys.

    For each query ``q_n`` the positive is the matching key ``k_n`` and the negatives are all
    rows of ``queue``; the loss is the cross-entropy of picking the positive among the
    ``1 + Q`` candidates, averaged over the N queries. ``q``, ``k`` and ``queue`` are
    L2-normalised here; ``k`` and ``queue`` are detached (gradients reach ``q`` only). Logits
    are computed in float32 with autocast off. The loss is asymmetric, as in MoCo-v2: for a
    symmetric loss call it twice with the views swapped.

    Args:
        q: (N, D) queries from the online encoder.
        k: (N, D) keys from the momentum (target) encoder, for the same samples as ``q``.
        queue: (Q, D) negative keys, Q >= 1, e.g. ``KeyQueue.keys(idx)``.
        temperature: softmax temperature t > 0.

    Returns:
        Scalar loss (float32, or float64 for float64 inputs).

    Example::

        >>> q, k, queue = torch.randn(8, 32), torch.randn(8, 32), torch.randn(64, 32)
        >>> info_nce(q, k, queue, temperature=0.1).shape
        torch.Size([])
    """
    _check_temperature(temperature)
    if q.ndim != 2 or q.shape != k.shape:
        raise ValueError(
            f"q and k must both be (N, D) with the same shape, got {tuple(q.shape)} and "
            f"{tuple(k.shape)}"
        )
    if q.shape[0] < 1:
        raise ValueError("info_nce needs at least one query, got an empty batch")
    if queue.ndim != 2 or queue.shape[0] < 1 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"queue must be (Q, D) with Q >= 1 and D = {q.shape[1]} like the queries, got "
            f"{tuple(queue.shape)}"
        )
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = _normalised(q)
        k = _normalised(k.detach()).to(q.dtype)
        negatives = _normalised(queue.detach()).to(q.dtype)
        positive_logits = (q * k).sum(dim=1, keepdim=True)
        negative_logits = q @ negatives.T
        logits = torch.cat([positive_logits, negative_logits], dim=1) / temperature
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels)


class KeyQueue(nn.Module):
    """``num_queues`` circular queues of normalised negative keys, for MoCo-v2.

    The paper's code keeps one queue per invariance corner and enqueues the current
    batch's keys only into the queue of the corner that made them; use
    ``num_queues=1`` and ``idx=0`` for a single shared queue. Queues and their write pointers
    are registered buffers, so they are saved in ``state_dict`` and follow ``.to()``.

    Args:
        num_queues: number of independent queues (e.g. the number of invariance corners).
        size: keys per queue (Q). Must be at least the batch size passed to :meth:`enqueue`.
        dim: key dimension (D).
        generator: optional ``torch.Generator`` (CPU) for the random initial keys.

    Example::

        >>> queues = KeyQueue(num_queues=3, size=64, dim=32)
        >>> negatives = queues.keys(2)                    # (64, 32), a detached copy
        >>> queues.enqueue(torch.randn(8, 32), idx=2)     # overwrites the 8 oldest keys
    """

    queue: Tensor
    ptr: Tensor

    def __init__(
        self, num_queues: int, size: int, dim: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if num_queues < 1 or size < 1 or dim < 1:
            raise ValueError(
                f"num_queues, size and dim must all be >= 1, got {num_queues}, {size}, {dim}"
            )
        init = torch.randn(num_queues, size, dim, generator=generator)
        self.register_buffer("queue", F.normalize(init, dim=-1))
        self.register_buffer("ptr", torch.zeros(num_queues, dtype=torch.long))

    @property
    def num_queues(self) -> int:
        return self.queue.shape[0]

    @property
    def size(self) -> int:
        return self.queue.shape[1]

    @property
    def dim(self) -> int:
        return self.queue.shape[2]

    def _check_idx(self, idx: int) -> int:
        idx = int(idx)
        if not 0 <= idx < self.num_queues:
            raise IndexError(f"queue index {idx} out of range: there are {self.num_queues} queues")
        return idx

    def keys(self, idx: int) -> Tensor:
        """A detached copy (size, dim) of queue ``idx``.

        A copy, so that enqueueing before ``loss.backward()`` does not modify a tensor that
        autograd saved for the backward pass.
        """
        return self.queue[self._check_idx(idx)].detach().clone()

    @torch.no_grad()
    def enqueue(self, keys: Tensor, idx: int) -> None:
        """Write a batch of keys (B, dim) into queue ``idx`` at its pointer, wrapping around.

        Keys are detached, L2-normalised and cast to the queue's dtype and device; the
        oldest B keys of that queue are overwritten and only its pointer advances. Under
        DDP, gather the keys from all processes before enqueueing.
        """
        idx = self._check_idx(idx)
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be (B, {self.dim}), got {tuple(keys.shape)}")
        batch = keys.shape[0]
        if batch > self.size:
            raise ValueError(
                f"cannot enqueue {batch} keys into a queue of size {self.size}; "
                "make the queue at least as large as the batch"
            )
        keys = F.normalize(keys.detach().float(), dim=-1).to(self.queue)
        start = int(self.ptr[idx])
        slots = (start + torch.arange(batch, device=self.queue.device)) % self.size
        self.queue[idx, slots] = keys
        self.ptr[idx] = (start + batch) % self.size

    def extra_repr(self) -> str:
        return f"num_queues={self.num_queues}, size={self.size}, dim={self.dim}"


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float) -> None:
    """Move ``target``'s parameters towards ``online``'s: ``t <- m * t + (1 - m) * o``.

    In place, without gradients. Buffers (e.g. BatchNorm running statistics) are copied from
    ``online``. ``m=0`` makes ``target`` an exact copy (use it once at start-up); ``m=1``
    leaves it unchanged. The two modules must have the same architecture.

    Example::

        >>> online, target = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
        >>> momentum_update(online, target, m=0.99)
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum m must be in [0, 1], got {m}")
    online_params = dict(online.named_parameters())
    target_params = dict(target.named_parameters())
    online_buffers = dict(online.named_buffers())
    target_buffers = dict(target.named_buffers())
    if online_params.keys() != target_params.keys() or (
        online_buffers.keys() != target_buffers.keys()
    ):
        raise ValueError(
            "online and target modules have different parameters or buffers; build the "
            "target as a copy of the online module (e.g. copy.deepcopy)"
        )
    names = list(online_params)
    if names:
        torch._foreach_lerp_(
            [target_params[name] for name in names],
            [online_params[name] for name in names],
            1.0 - m,
        )
    for name, buffer in online_buffers.items():
        target_buffers[name].copy_(buffer)
