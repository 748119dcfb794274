"""Optimized product quantization (OPQ + PQ) of item text embeddings: VQ-Rec's discrete item codes.

An item's ``d``-dim text vector is rotated by a learned orthonormal matrix ``R`` (OPQ), cut
into ``D`` sub-vectors of ``d / D`` dims, and each sub-vector is replaced by the index of its
nearest centroid among ``K`` (one codebook per sub-vector): the item becomes ``D`` integers in
``[0, K)``. FAISS trains ``R`` and the codebooks. Any vector gets codes, including items added
after training: ``encode`` runs FAISS's own assignment (``IndexPreTransform(R, IndexPQ)``'s
``sa_encode``, bits unpacked when ``K != 256``, see ``to_faiss``/``unpack_codes``), or the same
computation in numpy (rotate, split, nearest centroid; ``backend="numpy"``), so a saved
quantizer also loads and encodes without FAISS. The two agree exactly (tested).

Small catalogs: FAISS's k-means wants at least ``min_points_per_centroid`` (39) training points
per centroid; VQ-Rec's K=256 needs 9,984 texts, more than ML-100K (1,682) or Scientific (4,385)
have. With ``small_catalog="lower"`` (default) ``K`` drops to the largest power of two K' with
``n_train >= min_points_per_centroid * K'``; a ``SmallCatalogWarning`` is raised and the
change is recorded in ``report`` (and in the saved JSON). ``"keep"`` trains the requested K
anyway (needs ``n_train >= K``; recorded too), ``"error"`` raises. Instead of lowering K one can
train on more texts: ``fit(embeddings, extra_embeddings=...)`` (e.g. other domains' items,
encoded with the same model); the extra vectors only train, they get no codes. FAISS's own
per-centroid warnings are silenced: the rule above has already decided, and says so.

Determinism: the OPQ start rotation is a random orthonormal matrix from ``numpy``'s generator
seeded with ``seed``, the k-means seeds (``ClusteringParameters.seed``) are ``seed`` and any
training subsample is drawn with the same generator, so a seed gives the same codes for the
same data (FAISS's SVD is only bit-exact single-threaded: ``faiss.omp_set_num_threads(1)``).

Files (``save``/``load``, a folder): ``quantizer.safetensors`` holds ``rotation`` ``(d, d)``
(absent without OPQ) and ``centroids`` ``(D, K, d/D)`` float32; ``quantizer.json`` the settings,
the fit report and the sha1 of the tensor file. Safetensors + JSON rather than
``faiss.write_index`` (not a pickle, but a FAISS-version binary that needs FAISS to read):
numpy/torch read them directly, they can be inspected, and nothing executes on load. Both files
are written to temporary names and moved in place with ``os.replace``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

MIN_POINTS_PER_CENTROID = 39  # FAISS's k-means threshold for a warning
OPQ_MAX_TRAIN_POINTS = 256 * 256  # FAISS's OPQMatrix default
TENSORS_FILE = "quantizer.safetensors"
CONFIG_FILE = "quantizer.json"
FORMAT_VERSION = 1


OPQ_MIN_CENTROIDS = 16


class SmallCatalogWarning(UserWarning):
    """Fewer training vectors than the requested number of centroids wants."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    from textrec.io import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def _random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q *= np.sign(np.diag(r))  # a uniformly random orthonormal matrix
    return q.astype(np.float32)


def torch_threads() -> int:
    """torch's intra-op thread count (the process-wide thread budget textrec follows)."""
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a dependency
        return 1


@contextlib.contextmanager
def _heartbeat(desc: str, enabled: bool | None):
    """A ticking elapsed-time line while a long FAISS call runs (FAISS releases the GIL meanwhile).

    ``enabled=None`` shows it on a terminal only (tqdm's rule), so logs and tests stay clean.
    """
    from textrec.options import progress_bar as tqdm

    bar = tqdm(desc=desc, bar_format="{desc}: {elapsed} elapsed", disable=None if enabled is None else not enabled)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        bar.close()


def choose_n_centroids(n_train: int, n_centroids: int,
                       min_points_per_centroid: int = MIN_POINTS_PER_CENTROID) -> int:
    """Largest power of two ``K' <= n_centroids`` with ``n_train >= min_points_per_centroid * K'``.

    Never below 2; raises when even 2 centroids cannot be trained (``n_train < 2``).
    """
    if n_train >= min_points_per_centroid * n_centroids:
        return n_centroids
    k = 2 ** int(math.floor(math.log2(max(n_train / max(min_points_per_centroid, 1), 1))))
    k = max(2, min(k, n_centroids))
    if n_train < k:
        raise ValueError(f"{n_train} training vectors cannot train {k} centroids")
    return k


def unpack_codes(packed: np.ndarray, n_subvectors: int, nbits: int) -> np.ndarray:
    """FAISS's bit-packed PQ codes (``sa_encode``/``compute_codes``, LSB first) -> int64 ``(n, D)``."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if nbits == 8:
        return packed[:, :n_subvectors].astype(np.int64)
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :n_subvectors * nbits]
    bits = bits.reshape(len(packed), n_subvectors, nbits).astype(np.int64)
    return (bits << np.arange(nbits, dtype=np.int64)).sum(-1)


class ProductQuantizer:
    """OPQ rotation + product quantizer: vectors -> ``D`` integer codes in ``[0, K)``.

    ``n_subvectors`` (D) must divide the vector dimension; ``n_centroids`` (K) must be a power
    of two (it is a bit width for FAISS). After ``fit``, ``n_centroids_`` is the K actually used
    (see the module docstring for the small-catalog rule) and ``report`` says what happened.
    """

    def __init__(self, n_subvectors: int = 32, n_centroids: int = 256, opq: bool = True, seed: int = 0,
                 small_catalog: str = "lower", min_points_per_centroid: int = MIN_POINTS_PER_CENTROID,
                 opq_iters: int = 50, pq_iters: int = 25, verbose: bool = False):
        if n_centroids < 2 or n_centroids & (n_centroids - 1):
            raise ValueError(f"n_centroids must be a power of two >= 2, not {n_centroids}")
        if small_catalog not in ("lower", "keep", "error"):
            raise ValueError(f"small_catalog must be 'lower', 'keep' or 'error', not {small_catalog!r}")
        self.n_subvectors = int(n_subvectors)
        self.n_centroids = int(n_centroids)
        self.opq = bool(opq)
        self.seed = int(seed)
        self.small_catalog = small_catalog
        self.min_points_per_centroid = int(min_points_per_centroid)
        self.opq_iters = int(opq_iters)
        self.pq_iters = int(pq_iters)
        self.verbose = verbose
        self.rotation: np.ndarray | None = None  # (d, d): rotated = x @ rotation.T
        self.centroids: np.ndarray | None = None  # (D, K', d / D)
        self.report: dict = {}
        self._faiss_index = None  # built from rotation/centroids on first FAISS encode

    # ---- properties ----------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.centroids is not None

    @property
    def n_centroids_(self) -> int:
        self._check_fitted()
        assert self.centroids is not None
        return int(self.centroids.shape[1])

    @property
    def nbits(self) -> int:
        return int(round(math.log2(self.n_centroids_)))

    @property
    def dim(self) -> int:
        self._check_fitted()
        assert self.centroids is not None
        return int(self.centroids.shape[0] * self.centroids.shape[2])

    def _check_fitted(self) -> None:
        if self.centroids is None:
            raise RuntimeError("ProductQuantizer is not fitted: call fit() or load()")

    # ---- training ------------------------------------------------------------------------
    def fit(self, embeddings: np.ndarray, extra_embeddings: np.ndarray | None = None,
            progress: bool | None = None) -> ProductQuantizer:
        """Train the rotation and codebooks on ``embeddings`` (+ ``extra_embeddings``, train only).

        ``progress``: an elapsed-time line during the OPQ and PQ fits (default: on a terminal only).
        """
        import faiss

        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or not len(x):
            raise ValueError(f"embeddings must be a non-empty 2-d array, got shape {x.shape}")
        n_items, d = x.shape
        n_extra = 0
        if extra_embeddings is not None and len(extra_embeddings):
            extra = np.asarray(extra_embeddings, dtype=np.float32)
            if extra.ndim != 2 or extra.shape[1] != d:
                raise ValueError(f"extra_embeddings must be (m, {d}), got {extra.shape}")
            n_extra = len(extra)
            x = np.concatenate([x, extra])
        if not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN or inf")
        x = np.ascontiguousarray(x)
        D = self.n_subvectors
        if d % D:
            raise ValueError(f"n_subvectors={D} must divide the embedding dimension {d}")
        n = len(x)
        K = self.n_centroids
        notes: list[str] = []
        need = self.min_points_per_centroid * K
        if n >= need:
            k_eff = K
        elif self.small_catalog == "error":
            raise ValueError(f"{n} training vectors < {self.min_points_per_centroid} x {K} centroids "
                             f"= {need}: pass extra_embeddings, fewer centroids, or small_catalog='lower'")
        elif self.small_catalog == "keep":
            if n < K:
                raise ValueError(f"{n} training vectors cannot train {K} centroids")
            k_eff = K
            notes.append(f"small catalog: {n} training vectors < {need} "
                         f"({self.min_points_per_centroid} per centroid); kept K={K} "
                         f"({n / K:.1f} vectors per centroid)")
        else:
            k_eff = choose_n_centroids(n, K, self.min_points_per_centroid)
            notes.append(f"small catalog: {n} training vectors < {need} "
                         f"({self.min_points_per_centroid} per centroid x K={K}); "
                         f"lowered K to {k_eff}")
        for note in notes:
            warnings.warn(note, SmallCatalogWarning, stacklevel=2)
        nbits = int(round(math.log2(k_eff)))
        rng = np.random.default_rng(self.seed)
        # FAISS's OpenMP pool defaults to every core; on a shared CPU (torch training beside it)
        # its spinning threads slowed OPQ 10-40x, so follow torch's thread setting instead
        threads_before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(max(1, torch_threads()))
        try:
            return self._fit(faiss, x, n_items, n_extra, d, D, K, k_eff, nbits, rng, notes, progress)
        finally:
            faiss.omp_set_num_threads(threads_before)

    def _fit(self, faiss, x, n_items, n_extra, d, D, K, k_eff, nbits, rng, notes,
             progress: bool | None = None) -> ProductQuantizer:
        n = len(x)
        t0 = time.perf_counter()

        def new_pq() -> faiss.ProductQuantizer:
            pq = faiss.ProductQuantizer(d, D, nbits)
            pq.cp.seed = self.seed
            pq.cp.min_points_per_centroid = 1  # FAISS's per-centroid warning: decided above
            pq.verbose = self.verbose
            return pq

        rotation = None
        xr = x
        t_opq = 0.0
        use_opq = self.opq
        if use_opq and k_eff < OPQ_MIN_CENTROIDS:
            # FAISS 1.15's OPQMatrix.train aborts the process (free(): invalid size) with tiny
            # sub-codebooks; below 16 centroids fall back to plain PQ and say so.
            use_opq = False
            note = (f"OPQ skipped: K={k_eff} < {OPQ_MIN_CENTROIDS} (FAISS OPQ aborts on tiny codebooks); "
                    f"plain PQ used")
            notes.append(note)
            warnings.warn(note, SmallCatalogWarning, stacklevel=2)
        if use_opq:
            xo = x
            if n > OPQ_MAX_TRAIN_POINTS:  # FAISS would subsample with a fixed seed: do it ourselves
                xo = x[np.sort(rng.choice(n, OPQ_MAX_TRAIN_POINTS, replace=False))]
            opq = faiss.OPQMatrix(d, D)
            opq.niter = self.opq_iters
            opq.max_train_points = len(xo)
            opq.verbose = self.verbose
            inner = new_pq()
            opq.pq = inner  # same K as the final PQ; `inner` stays referenced while training
            faiss.copy_array_to_vector(_random_rotation(d, rng).ravel(), opq.A)
            with _heartbeat(f"fitting OPQ rotation ({self.opq_iters} iterations, {len(xo):,} vectors, "
                            f"{D}x{k_eff} codes)", progress):
                opq.train(xo)
            rotation = faiss.vector_to_array(opq.A).reshape(d, d).astype(np.float32)
            del inner
            xr = np.ascontiguousarray(x @ rotation.T)
            t_opq = time.perf_counter() - t0
        pq = new_pq()
        pq.cp.niter = self.pq_iters
        with _heartbeat(f"fitting PQ codebooks ({self.pq_iters} iterations, {D}x{k_eff})", progress):
            pq.train(xr)
        centroids = faiss.vector_to_array(pq.centroids).reshape(D, k_eff, d // D).astype(np.float32)
        self.rotation, self.centroids, self._faiss_index = rotation, centroids, None
        fit_s = time.perf_counter() - t0
        codes = self.encode(x[:n_items])
        recon = self.decode(codes)
        mse = float(((recon - x[:n_items]) ** 2).sum(1).mean())
        self.report = {
            "n_items": int(n_items), "n_extra": int(n_extra), "n_train": int(n), "dim": int(d),
            "n_subvectors": D, "n_centroids_requested": K, "n_centroids": int(k_eff), "nbits": nbits,
            "lowered": bool(k_eff < K), "small_catalog": self.small_catalog,
            "min_points_per_centroid": self.min_points_per_centroid,
            "points_per_centroid": round(n / k_eff, 2), "opq": self.opq, "seed": self.seed,
            "opq_iters": self.opq_iters if self.opq else 0, "pq_iters": self.pq_iters,
            "fit_seconds": round(fit_s, 3), "opq_seconds": round(t_opq, 3),
            "reconstruction_mse": mse,
            "mean_sq_norm": float((x[:n_items] ** 2).sum(1).mean()),
            "faiss_version": getattr(faiss, "__version__", "?"), "notes": notes,
        }
        return self

    # ---- encoding ------------------------------------------------------------------------
    def rotate(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32)
        return x if self.rotation is None else x @ self.rotation.T

    def encode(self, embeddings: np.ndarray, backend: str = "auto", chunk_size: int = 65536) -> np.ndarray:
        """Codes ``(n, D)`` int64 in ``[0, K')`` of any vectors (nearest centroid per sub-vector).

        ``backend="faiss"`` runs FAISS's ``sa_encode`` (about 4x faster) and unpacks the bits;
        ``"numpy"`` rotates, splits and takes the nearest centroid in float64 (no FAISS needed);
        ``"auto"`` uses FAISS when it imports. Both give the same codes (tested).
        """
        self._check_fitted()
        assert self.centroids is not None
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        D, K, dsub = self.centroids.shape
        if x.ndim != 2 or x.shape[1] != D * dsub:
            raise ValueError(f"expected vectors of dimension {D * dsub}, got shape {x.shape}")
        if backend not in ("auto", "faiss", "numpy"):
            raise ValueError(f"backend must be 'auto', 'faiss' or 'numpy', not {backend!r}")
        if backend == "auto":
            backend = "faiss" if importlib.util.find_spec("faiss") is not None else "numpy"
        out = np.empty((len(x), D), dtype=np.int64)
        if backend == "faiss":
            if self._faiss_index is None:
                self._faiss_index = self.to_faiss()
            for s in range(0, len(x), chunk_size):
                packed = self._faiss_index.sa_encode(np.ascontiguousarray(x[s:s + chunk_size]))
                out[s:s + chunk_size] = unpack_codes(packed, D, self.nbits)
            return out
        c = self.centroids.astype(np.float64)  # (D, K, dsub)
        c_t = np.ascontiguousarray(c.transpose(0, 2, 1))  # (D, dsub, K)
        c_sq = (c ** 2).sum(-1)  # (D, K)
        rows = 1024
        for s in range(0, len(x), rows):
            xr = self.rotate(x[s:s + rows]).astype(np.float64)
            for m in range(D):  # ||x - c||^2 minus the constant ||x||^2
                dist = c_sq[m] - 2.0 * (xr[:, m * dsub:(m + 1) * dsub] @ c_t[m])
                out[s:s + rows, m] = dist.argmin(1)
        return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Approximate vectors (in the original, unrotated space) from codes."""
        self._check_fitted()
        assert self.centroids is not None
        codes = np.asarray(codes, dtype=np.int64)
        D = self.centroids.shape[0]
        rec = np.concatenate([self.centroids[m][codes[:, m]] for m in range(D)], axis=1)
        return rec if self.rotation is None else rec @ self.rotation

    def to_faiss(self):
        """The same quantizer as a FAISS index (``IndexPreTransform(LinearTransform, IndexPQ)``)."""
        import faiss

        self._check_fitted()
        assert self.centroids is not None
        D, K, dsub = self.centroids.shape
        d = D * dsub
        index = faiss.IndexPQ(d, D, self.nbits)
        faiss.copy_array_to_vector(self.centroids.ravel(), index.pq.centroids)
        index.is_trained = True
        if self.rotation is None:
            return index
        lt = faiss.LinearTransform(d, d, False)
        faiss.copy_array_to_vector(self.rotation.ravel(), lt.A)
        lt.is_trained = True
        return faiss.IndexPreTransform(lt, index)  # the wrapper keeps references to both parts

    # ---- reporting -----------------------------------------------------------------------
    def stats(self, codes: np.ndarray) -> dict:
        """``code_stats`` of ``codes`` plus this quantizer's fit report."""
        out = code_stats(codes, self.n_centroids_)
        out["quantizer"] = dict(self.report)
        return out

    # ---- persistence ---------------------------------------------------------------------
    def config(self) -> dict:
        return {"format_version": FORMAT_VERSION, "n_subvectors": self.n_subvectors,
                "n_centroids": self.n_centroids, "opq": self.opq, "seed": self.seed,
                "small_catalog": self.small_catalog,
                "min_points_per_centroid": self.min_points_per_centroid,
                "opq_iters": self.opq_iters, "pq_iters": self.pq_iters}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``quantizer.safetensors`` + ``quantizer.json`` into the folder ``path``."""
        from safetensors.numpy import save as st_save

        self._check_fitted()
        assert self.centroids is not None
        folder = Path(path)
        tensors = {"centroids": np.ascontiguousarray(self.centroids, dtype=np.float32)}
        if self.rotation is not None:
            tensors["rotation"] = np.ascontiguousarray(self.rotation, dtype=np.float32)
        blob = st_save(tensors, metadata={"format": "textrec.ProductQuantizer"})
        _atomic_write_bytes(folder / TENSORS_FILE, blob)
        meta = {"config": self.config(), "n_centroids_effective": self.n_centroids_, "dim": self.dim,
                "report": self.report, "tensors_sha1": hashlib.sha1(blob).hexdigest()}
        _atomic_write_bytes(folder / CONFIG_FILE, json.dumps(meta, indent=1).encode())
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> ProductQuantizer:
        from safetensors.numpy import load as st_load

        folder = Path(path)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        if meta["config"].get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: unsupported quantizer format {meta['config'].get('format_version')}")
        blob = (folder / TENSORS_FILE).read_bytes()
        if hashlib.sha1(blob).hexdigest() != meta["tensors_sha1"]:
            raise ValueError(f"{folder}: {TENSORS_FILE} does not match {CONFIG_FILE} (partial save?)")
        tensors = st_load(blob)
        cfg = {k: v for k, v in meta["config"].items() if k != "format_version"}
        q = cls(**cfg)
        q.centroids = tensors["centroids"].astype(np.float32)
        q.rotation = tensors["rotation"].astype(np.float32) if "rotation" in tensors else None
        q.report = meta.get("report", {})
        return q

    def __repr__(self) -> str:
        k = f"K={self.n_centroids_} (asked {self.n_centroids})" if self.is_fitted else f"K={self.n_centroids}"
        return f"ProductQuantizer(D={self.n_subvectors}, {k}, opq={self.opq}, seed={self.seed})"


def code_stats(codes: np.ndarray, n_centroids: int | None = None) -> dict:
    """Collisions and code usage of item codes ``(n, D)``.

    ``n_colliding_items``: items whose full code tuple another item also has;
    ``n_collision_groups``: distinct code tuples shared by 2+ items; ``largest_collision_group``.
    Per sub-vector: ``usage`` = distinct codes used / K, ``entropy_bits`` of the code
    distribution and ``entropy_norm`` = entropy / log2 K (1 = uniform use).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (n, D), got shape {codes.shape}")
    n, D = codes.shape
    K = int(n_centroids) if n_centroids else int(codes.max()) + 1 if n else 1
    if n:
        _, counts = np.unique(codes, axis=0, return_counts=True)
    else:
        counts = np.zeros(0, dtype=np.int64)
    shared = counts[counts > 1]
    usage, entropy = [], []
    for m in range(D):
        cnt = np.bincount(codes[:, m].astype(np.int64), minlength=K)
        usage.append(float((cnt > 0).sum() / K))
        p = cnt[cnt > 0] / max(n, 1)
        entropy.append(float(-(p * np.log2(p)).sum()))
    log_k = math.log2(K) if K > 1 else 1.0
    return {
        "n_items": int(n), "n_subvectors": int(D), "n_centroids": K,
        "n_distinct_codes": int(len(counts)),
        "n_colliding_items": int(shared.sum()), "n_collision_groups": int(len(shared)),
        "largest_collision_group": int(shared.max()) if len(shared) else 1 if n else 0,
        "collision_rate": float(shared.sum() / n) if n else 0.0,
        "usage": usage, "entropy_bits": entropy, "entropy_norm": [e / log_k for e in entropy],
        "mean_usage": float(np.mean(usage)) if D else 0.0,
        "min_usage": float(np.min(usage)) if D else 0.0,
        "mean_entropy_norm": float(np.mean(entropy) / log_k) if D else 0.0,
    }


def plot_code_usage(codes: np.ndarray, path: str | os.PathLike, n_centroids: int | None = None,
                    title: str | None = None) -> Path:
    """PNG: heatmap of code counts per sub-vector (rows) and code (columns), plus usage/entropy bars."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    codes = np.asarray(codes, dtype=np.int64)
    stats = code_stats(codes, n_centroids)
    D, K = stats["n_subvectors"], stats["n_centroids"]
    counts = np.stack([np.bincount(codes[:, m], minlength=K) for m in range(D)]) if D else np.zeros((0, K))
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [3, 1.4]})
    im = ax0.imshow(np.log1p(counts), aspect="auto", interpolation="nearest", cmap="viridis")
    ax0.set_xlabel(f"code (K={K})")
    ax0.set_ylabel("sub-vector")
    fig.colorbar(im, ax=ax0, label="log(1 + items)")
    x = np.arange(D)
    ax1.bar(x - 0.2, stats["usage"], width=0.4, label="codes used / K")
    ax1.bar(x + 0.2, stats["entropy_norm"], width=0.4, label="entropy / log2 K")
    ax1.set_ylim(0, 1.05)
    ax1.set_xlabel("sub-vector")
    ax1.legend(loc="lower right", fontsize=8)
    fig.suptitle(title or (f"{stats['n_items']} items, D={D}, K={K}: {stats['n_distinct_codes']} distinct codes, "
                           f"{stats['n_colliding_items']} colliding items in {stats['n_collision_groups']} groups"),
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    out = Path(path)
    _atomic_write_bytes(out, buf.getvalue())
    return out


def save_quantizer(quantizer: ProductQuantizer | None, folder: str | os.PathLike) -> None:
    """Save a model's quantizer (if any) into ``<folder>/quantizer``: the layout VQ-Rec and TextFusion share."""
    if quantizer is not None:
        quantizer.save(Path(folder) / "quantizer")


def load_quantizer(folder: str | os.PathLike) -> ProductQuantizer | None:
    """The quantizer in ``<folder>/quantizer``, or None when the model was saved without one."""
    qdir = Path(folder) / "quantizer"
    return ProductQuantizer.load(qdir) if qdir.is_dir() else None

