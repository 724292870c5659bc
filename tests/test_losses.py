import copy
import doctest
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import amortinv.losses
from amortinv.losses import KeyQueue, NTXentLoss, info_nce, momentum_update, nt_xent

TEMPERATURES = (0.07, 0.1, 0.5, 1.0)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Slow NT-Xent: a Python loop over the 2N anchors, in float64."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        denominator = sum(math.exp(_cos(z[i], z[j]) / t) for j in range(n2) if j != i)
        total += -math.log(math.exp(_cos(z[i], z[pos]) / t) / denominator)
    return total / n2


def info_nce_reference(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, t: float) -> float:
    """Slow InfoNCE: a Python loop over queries and negatives, in float64."""
    q, k, queue = q.double(), k.double(), queue.double()
    total = 0.0
    for n in range(q.shape[0]):
        positive = math.exp(_cos(q[n], k[n]) / t)
        negatives = sum(math.exp(_cos(q[n], neg) / t) for neg in queue)
        total += -math.log(positive / (positive + negatives))
    return total / q.shape[0]


# -- NT-Xent -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "d"), list(itertools.product((2, 5, 16), (3, 32))))
@pytest.mark.parametrize("t", TEMPERATURES)
def test_nt_xent_matches_a_loop_reference(n, d, t):
    gen = torch.Generator().manual_seed(n * 100 + d)
    z1, z2 = torch.randn(n, d, generator=gen), torch.randn(n, d, generator=gen)
    expected = nt_xent_reference(z1, z2, t)
    assert nt_xent(z1.double(), z2.double(), t).item() == pytest.approx(expected, rel=1e-10)
    assert nt_xent(z1, z2, t).item() == pytest.approx(expected, rel=1e-4)
    assert NTXentLoss(temperature=t)(z1, z2).item() == pytest.approx(expected, rel=1e-4)


def test_nt_xent_is_invariant_to_scale_and_to_swapping_views():
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(12, 8, generator=gen), torch.randn(12, 8, generator=gen)
    loss = nt_xent(z1, z2, 0.2)
    scales = torch.rand(12, 1, generator=gen) * 10 + 0.1  # per-row positive scales
    assert nt_xent(z1 * scales, z2 * 3.0, 0.2).item() == pytest.approx(loss.item(), rel=1e-5)
    assert nt_xent(z2, z1, 0.2).item() == pytest.approx(loss.item(), rel=1e-5)
    # Permuting samples (the same way in both views) changes nothing either.
    perm = torch.randperm(12, generator=gen)
    assert nt_xent(z1[perm], z2[perm], 0.2).item() == pytest.approx(loss.item(), rel=1e-5)


def test_nt_xent_is_low_for_matching_views_and_high_for_swapped_partners():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(16, 32, generator=gen)
    matched = nt_xent(z, z + 0.01 * torch.randn(16, 32, generator=gen), 0.1)
    shuffled = nt_xent(z, z.roll(1, dims=0), 0.1)
    chance = math.log(2 * 16 - 1)
    assert matched.item() < 0.1 < chance < shuffled.item()


@pytest.mark.parametrize(
    ("z1", "z2", "words"),
    [
        (torch.randn(1, 8), torch.randn(1, 8), "at least 2"),
        (torch.randn(4, 8), torch.randn(5, 8), "same shape"),
        (torch.randn(4, 2, 8), torch.randn(4, 2, 8), "(N, D)"),
    ],
)
def test_nt_xent_rejects_bad_batches(z1, z2, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        nt_xent(z1, z2)


@pytest.mark.parametrize("t", [0.0, -0.5])
def test_losses_reject_non_positive_temperature(t):
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, t)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(t)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, z, t)


def test_nt_xent_is_stable_under_bf16_autocast():
    gen = torch.Generator().manual_seed(2)
    encoder = nn.Linear(32, 64)
    x1, x2 = torch.randn(64, 32, generator=gen), torch.randn(64, 32, generator=gen)
    reference = nt_xent(encoder(x1), encoder(x2), 0.07)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = encoder(x1), encoder(x2)
        assert z1.dtype == torch.bfloat16
        loss = nt_xent(z1, z2, 0.07)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=2e-2)
    loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


# -- InfoNCE -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "queue_size"), [(1, 1), (2, 7), (5, 32), (16, 64)])
@pytest.mark.parametrize("t", TEMPERATURES)
def test_info_nce_matches_a_loop_reference(n, queue_size, t):
    gen = torch.Generator().manual_seed(n * 1000 + queue_size)
    q, k = torch.randn(n, 16, generator=gen), torch.randn(n, 16, generator=gen)
    queue = nn.functional.normalize(torch.randn(queue_size, 16, generator=gen), dim=1)
    expected = info_nce_reference(q, k, queue, t)
    got64 = info_nce(q.double(), k.double(), queue.double(), t).item()
    assert got64 == pytest.approx(expected, rel=1e-10)
    assert info_nce(q, k, queue, t).item() == pytest.approx(expected, rel=1e-4)


def test_info_nce_is_scale_invariant_and_sends_gradients_to_queries_only():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(8, 16, generator=gen, requires_grad=True)
    k = torch.randn(8, 16, generator=gen, requires_grad=True)
    queue = torch.randn(32, 16, generator=gen, requires_grad=True)
    loss = info_nce(q, k, queue, 0.1)
    scaled = info_nce(q * 5.0, k * 0.2, queue * 3.0, 0.1)
    assert scaled.item() == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_info_nce_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        info_nce(torch.randn(4, 8), torch.randn(3, 8), torch.randn(16, 8))
    with pytest.raises(ValueError, match="queue"):
        info_nce(torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 9))
    with pytest.raises(ValueError, match="queue"):
        info_nce(torch.randn(4, 8), torch.randn(4, 8), torch.randn(0, 8))


def test_info_nce_is_stable_under_bf16_autocast():
    gen = torch.Generator().manual_seed(4)
    encoder = nn.Linear(32, 64)
    x1, x2 = torch.randn(64, 32, generator=gen), torch.randn(64, 32, generator=gen)
    queue = KeyQueue(1, 256, 64, generator=gen).keys(0)
    reference = info_nce(encoder(x1), encoder(x2), queue, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = info_nce(encoder(x1), encoder(x2), queue.bfloat16(), 0.1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=2e-2)
    loss.backward()
    assert all(
        torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in encoder.parameters()
    )


# -- KeyQueue ----------------------------------------------------------------------------------
def test_key_queue_starts_with_seeded_normalised_keys():
    a = KeyQueue(3, 10, 4, generator=torch.Generator().manual_seed(5))
    b = KeyQueue(3, 10, 4, generator=torch.Generator().manual_seed(5))
    assert a.queue.shape == (3, 10, 4) and a.ptr.tolist() == [0, 0, 0]
    assert torch.allclose(a.queue.norm(dim=-1), torch.ones(3, 10))
    assert torch.equal(a.queue, b.queue)
    assert not torch.equal(a.queue[0], a.queue[1])
    assert (a.num_queues, a.size, a.dim) == (3, 10, 4)


def test_key_queue_enqueue_wraps_around():
    marked = torch.arange(1, 12, dtype=torch.float32)
    queues = KeyQueue(1, 5, 1)  # 1-D keys normalise to +-1: the sign marks the batch
    queues.enqueue(marked[:3, None], 0)
    queues.enqueue(-marked[3:6, None], 0)  # writes slots 3, 4, 0
    assert queues.keys(0).flatten().tolist() == [-1.0, 1.0, 1.0, -1.0, -1.0]
    assert queues.ptr.tolist() == [1]


def test_key_queue_enqueue_writes_the_batch_in_order_at_the_pointer():
    queues = KeyQueue(1, 6, 3, generator=torch.Generator().manual_seed(6))
    before = queues.keys(0)
    first = nn.functional.normalize(torch.randn(4, 3), dim=1)
    second = nn.functional.normalize(torch.randn(4, 3), dim=1)
    queues.enqueue(first, 0)
    assert torch.allclose(queues.keys(0)[:4], first)
    assert torch.equal(queues.keys(0)[4:], before[4:])
    queues.enqueue(second, 0)
    assert torch.allclose(queues.keys(0)[4:], second[:2])
    assert torch.allclose(queues.keys(0)[:2], second[2:])
    assert torch.allclose(queues.keys(0)[2:4], first[2:])
    assert queues.ptr.tolist() == [2]


def test_key_queues_are_independent():
    queues = KeyQueue(3, 8, 4, generator=torch.Generator().manual_seed(7))
    before = queues.queue.clone()
    queues.enqueue(torch.randn(3, 4), idx=1)
    assert queues.ptr.tolist() == [0, 3, 0]
    assert torch.equal(queues.queue[0], before[0]) and torch.equal(queues.queue[2], before[2])
    assert not torch.equal(queues.queue[1, :3], before[1, :3])
    assert torch.equal(queues.queue[1, 3:], before[1, 3:])


def test_key_queue_keys_is_a_copy_so_enqueue_before_backward_is_safe():
    queues = KeyQueue(1, 16, 8)
    q = torch.randn(4, 8, requires_grad=True)
    k = torch.randn(4, 8)
    loss = info_nce(q, k, queues.keys(0), 0.1)
    queues.enqueue(k, 0)  # MoCo enqueues in the forward pass, before backward
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_key_queue_rejects_bad_input():
    queues = KeyQueue(2, 4, 3)
    with pytest.raises(IndexError, match="2 queues"):
        queues.keys(2)
    with pytest.raises(IndexError, match="2 queues"):
        queues.enqueue(torch.randn(2, 3), idx=-1)
    with pytest.raises(ValueError, match="at least as large as the batch"):
        queues.enqueue(torch.randn(5, 3), idx=0)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        queues.enqueue(torch.randn(2, 4), idx=0)
    with pytest.raises(ValueError, match=">= 1"):
        KeyQueue(0, 4, 3)


def test_key_queue_state_dict_round_trip():
    queues = KeyQueue(2, 6, 3, generator=torch.Generator().manual_seed(8))
    queues.enqueue(torch.randn(4, 3), idx=1)
    state = queues.state_dict()
    assert set(state) == {"queue", "ptr"}
    restored = KeyQueue(2, 6, 3, generator=torch.Generator().manual_seed(9))
    restored.load_state_dict(state)
    assert torch.equal(restored.queue, queues.queue)
    assert restored.ptr.tolist() == [0, 4]
    keys = torch.randn(4, 3)
    queues.enqueue(keys, 1)
    restored.enqueue(keys, 1)
    assert torch.equal(restored.queue, queues.queue)  # the pointer was restored too


def test_key_queue_follows_to_dtype_and_device():
    queues = KeyQueue(2, 4, 3).to(torch.float64)
    assert queues.queue.dtype == torch.float64 and queues.ptr.dtype == torch.long
    queues.enqueue(torch.randn(2, 3, dtype=torch.bfloat16), 0)
    assert queues.keys(0).dtype == torch.float64
    queues = queues.to("meta")
    assert queues.queue.device.type == "meta" and queues.ptr.device.type == "meta"
    if torch.cuda.is_available():
        queues = KeyQueue(2, 4, 3).cuda()
        queues.enqueue(torch.randn(2, 3), 1)  # keys on the CPU are moved to the queue
        assert queues.keys(1).is_cuda and queues.ptr.is_cuda


# -- momentum_update ---------------------------------------------------------------------------
def _tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_momentum_update_math():
    torch.manual_seed(10)
    online, target = _tiny(), _tiny()
    online(torch.randn(8, 3))  # moves online's BatchNorm running statistics
    before = copy.deepcopy(target)

    momentum_update(online, target, m=1.0)
    for p, q in zip(target.parameters(), before.parameters(), strict=True):
        assert torch.equal(p, q)

    momentum_update(online, target, m=0.75)
    for p, old, new in zip(
        target.parameters(), before.parameters(), online.parameters(), strict=True
    ):
        assert torch.allclose(p, 0.75 * old + 0.25 * new)
        assert not p.requires_grad or p.grad is None
    for b, new in zip(target.buffers(), online.buffers(), strict=True):
        assert torch.equal(b, new)  # buffers are copied, not averaged

    momentum_update(online, target, m=0.0)
    for p, q in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(p, q)


def test_momentum_update_does_not_track_gradients_and_rejects_mismatches():
    online, target = _tiny(), _tiny()
    momentum_update(online, target, m=0.5)
    assert all(p.grad_fn is None for p in target.parameters())
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        momentum_update(online, target, m=1.5)
    with pytest.raises(ValueError, match="different parameters"):
        momentum_update(online, nn.Linear(3, 4), m=0.5)


# -- training: each loss goes down on tiny data ------------------------------------------------
def _views(gen: torch.Generator, n: int = 32, d: int = 16, noise: float = 0.5):
    """Two noisy views of n random vectors."""
    x = torch.randn(n, d, generator=gen)
    view1 = x + noise * torch.randn(n, d, generator=gen)
    view2 = x + noise * torch.randn(n, d, generator=gen)
    return view1, view2


def _encoder(d: int = 16, out: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, out))


def test_nt_xent_decreases_when_training():
    gen = torch.Generator().manual_seed(11)
    torch.manual_seed(11)
    x1, x2 = _views(gen)
    encoder = _encoder()
    optimiser = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = nt_xent(encoder(x1), encoder(x2), temperature=0.1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_info_nce_decreases_when_training_with_a_momentum_encoder_and_queue():
    gen = torch.Generator().manual_seed(12)
    torch.manual_seed(12)
    x1, x2 = _views(gen)
    batches = [slice(i, i + 8) for i in range(0, 32, 8)]
    online, target = _encoder(), _encoder()
    momentum_update(online, target, m=0.0)
    for p in target.parameters():
        p.requires_grad_(False)
    # The queue holds the two previous batches, so a sample's own key is never a negative;
    # fill it first, so the first loss already sees real keys, not the random initial ones.
    queue = KeyQueue(num_queues=1, size=16, dim=8, generator=gen)
    with torch.no_grad():
        for batch in batches[-2:]:
            queue.enqueue(target(x2[batch]), 0)
    optimiser = torch.optim.Adam(online.parameters(), lr=1e-2)
    losses = []
    for step in range(20):
        batch = batches[step % 4]
        with torch.no_grad():
            k = target(x2[batch])
        loss = info_nce(online(x1[batch]), k, queue.keys(0), temperature=0.1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        queue.enqueue(k, 0)
        momentum_update(online, target, m=0.99)
        losses.append(loss.item())
    first_epoch, last_epoch = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last_epoch < 0.5 * first_epoch, losses


def test_module_docstring_examples_run():
    result = doctest.testmod(amortinv.losses)
    assert result.attempted > 5 and result.failed == 0


def test_nt_xent_across_processes_is_the_whole_batch_loss(tmp_path):
    """Two gloo processes, half a batch each: the mean of their losses is the whole batch's
    NT-Xent, and their gradients, averaged as DDP averages them, are the whole batch's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(28500 + os.getpid() % 1000),
         Path(__file__).with_name("nt_xent_worker.py"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    z1 = ranks[0]["z1"].clone().requires_grad_()
    z2 = ranks[0]["z2"].clone().requires_grad_()
    whole = nt_xent(z1, z2, 0.5)
    whole.backward()
    assert torch.allclose((ranks[0]["loss"] + ranks[1]["loss"]) / 2, whole)
    assert not torch.allclose(ranks[0]["loss"], ranks[1]["loss"])  # each half its own anchors
    for name, z in (("grad1", z1), ("grad2", z2)):
        local = torch.cat([r[name] for r in ranks]) / 2  # DDP's mean over the processes
        assert torch.allclose(local, z.grad)
