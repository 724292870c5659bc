"""2-D projections of features for the app: PCA (instant) and UMAP with a stable layout.

Moving an invariance slider changes every feature a little; a projection redrawn from scratch
would jump (PCA axes flip sign, UMAP lands anywhere). Here each new layout is aligned to the
previous one (orthogonal Procrustes), and UMAP starts from the previous layout with few epochs.
UMAP's own neighbour search is the slow part on a CPU, so the kNN graph is computed here by
brute force in torch (milliseconds for 2,000 points) and passed in.

    >>> import torch
    >>> proj = Projector("pca")
    >>> features = torch.randn(300, 64)
    >>> xy = proj(features)            # (N, 2), aligned to the previous call's layout
    >>> xy.shape
    (300, 2)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import threading

import numpy as np
import torch

_UMAP_READY = threading.Event()
_WARMING = threading.Lock()


def pca(z: torch.Tensor | np.ndarray, dims: int = 2) -> np.ndarray:
    """Top principal components of ``z`` (centred), via a thin SVD."""
    z = torch.as_tensor(z, dtype=torch.float32)
    z = z - z.mean(0)
    q = min(dims, *z.shape)
    u, s, _ = torch.linalg.svd(z, full_matrices=False)
    out = (u[:, :q] * s[:q]).numpy()
    if q < dims:  # fewer points or features than dimensions asked for
        out = np.pad(out, ((0, 0), (0, dims - q)))
    return out


def knn_graph(z: torch.Tensor | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of each point's ``k`` nearest neighbours (itself
    first), as UMAP's ``precomputed_knn`` expects."""
    z = torch.as_tensor(z, dtype=torch.float32)
    k = min(k, len(z))
    dist = torch.cdist(z, z)
    dist.fill_diagonal_(-1.0)  # each point is its own nearest neighbour
    d, idx = dist.topk(k, dim=1, largest=False)
    return idx.numpy().astype(np.int64), d.clamp_min(0).numpy().astype(np.float32)


def align(new: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Rotate/reflect and rescale ``new`` onto ``previous`` (orthogonal Procrustes), so a
    layout moves only as much as the points really moved."""
    if previous is None or previous.shape != new.shape:
        return new
    a = new - new.mean(0)
    b = previous - previous.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    rotation = u @ vt
    scale = s.sum() / max(float((a**2).sum()), 1e-12)
    return a @ rotation * scale + previous.mean(0)


class Projector:
    """Projects successive feature sets of the same points to 2-D, keeping the layout stable.

    ``method`` is ``"pca"`` or ``"umap"``. Not thread-safe: one per user session.
    """

    def __init__(self, method: str = "pca", n_neighbors: int = 15, min_dist: float = 0.1,
                 first_epochs: int = 200, update_epochs: int = 60, seed: int = 0):
        if method not in ("pca", "umap"):
            raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")
        self.method, self.n_neighbors, self.min_dist = method, n_neighbors, min_dist
        self.first_epochs, self.update_epochs, self.seed = first_epochs, update_epochs, seed
        self.layout: np.ndarray | None = None
        self._fingerprint = b""

    def __call__(self, z: torch.Tensor | np.ndarray) -> np.ndarray:
        """The 2-D layout of ``z``, aligned to the previous call's. The same features as last
        time give the very same layout (a redrawn page keeps its chart, and its selection)."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if len(z) < 3:
            raise ValueError(f"a projection needs at least 3 points, got {len(z)}")
        fingerprint = hashlib.blake2b(z.numpy().tobytes(), digest_size=16).digest()
        if self.layout is not None and fingerprint == self._fingerprint:
            return self.layout
        if self.layout is not None and len(self.layout) != len(z):
            self.layout = None  # another set of points: start afresh
        if self.method == "pca":
            xy = pca(z)
        else:  # UMAP on the top 50 principal components, as usual for wide features
            xy = self._umap(torch.as_tensor(pca(z, 50)) if z.shape[1] > 50 else z)
        xy = align(xy.astype(np.float32), self.layout)
        self.layout, self._fingerprint = xy, fingerprint
        return xy

    def _umap(self, z: torch.Tensor) -> np.ndarray:
        import umap  # slow to import (~2 s): warm_up_umap() does it when the server starts

        k = min(self.n_neighbors, len(z) - 1)
        idx, dist = knn_graph(z, k + 1)
        if self.layout is None:
            init, epochs = pca(z), self.first_epochs
            init = init / max(float(np.abs(init).max()), 1e-12) * 10  # UMAP's usual scale
        else:
            init, epochs = self.layout, self.update_epochs
        reducer = umap.UMAP(n_neighbors=k + 1, min_dist=self.min_dist, n_epochs=epochs,
                            init=init.astype(np.float32), random_state=self.seed,
                            precomputed_knn=(idx, dist), n_jobs=1)
        with _quiet():
            return reducer.fit_transform(z.numpy())


class _quiet:
    """UMAP warns that a fixed random_state disables parallelism: that is the intent."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def warm_up_umap(block: bool = False) -> threading.Event:
    """Import umap-learn, then compile its kernels on tiny data in a background thread (the
    first real fit would otherwise take ~15 s more). Returns an event set when ready.

    The import (~2 s) runs in the caller's thread: imported from a thread of its own, it once
    deadlocked against the server's own imports (umap-learn's scikit-learn and Streamlit's
    plotly both import narwhals; Python raised ``_DeadlockError`` and the app did not start).
    The thread runs at the lowest scheduling priority, so on a small machine the pages a user
    is waiting for go first."""

    def work():
        _lower_priority()
        rng = np.random.default_rng(0)
        Projector("umap", first_epochs=5)(rng.standard_normal((40, 8)).astype(np.float32))
        _UMAP_READY.set()

    if _WARMING.acquire(blocking=False):  # the first caller starts it; later ones share it
        import umap  # noqa: F401  (see above: never two threads importing at once)

        thread = threading.Thread(target=work, daemon=True, name="umap-warm-up")
        thread.start()
        # A daemon thread killed in the middle of numba's compilation aborts the interpreter
        # (an LLVM assertion, exit code 134): a process that ends early waits for it first.
        atexit.register(thread.join, 120)
    if block:
        _UMAP_READY.wait()
    return _UMAP_READY


def _lower_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux: niceness is per thread)."""
    with contextlib.suppress(AttributeError, OSError):  # elsewhere: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
