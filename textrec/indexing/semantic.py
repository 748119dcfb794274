"""Semantic indexing: product-quantized text-embedding codes as item ids (``<a_17><b_203>...``).

Each item's text is embedded with :class:`textrec.text.encoder.TextEncoder` and quantized by
:class:`textrec.text.quantize.ProductQuantizer` (VQ-Rec's OPQ/PQ) into ``D`` codes; code ``m``
becomes the token ``<{letter m}_{code}>`` (letters a, b, c, ... per position, so the same code
number at two positions is two different tokens). Items with similar text share tokens, and an
item that never appeared in training still has a meaningful id (zero-shot on new items).

Collision rule: items whose ``D`` codes are all equal get one extra disambiguation token
``<z_j>`` (``j`` = 0, 1, ... in item-index order inside the group), like TIGER's extra code. Only
colliding items carry it; no id is a prefix of another because the whole group carries it.
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from textrec.indexing.base import ItemIndex

LETTERS = string.ascii_lowercase[:25]  # 'z' is reserved for the collision token


def codes_to_index(codes: np.ndarray, report: dict | None = None) -> ItemIndex:
    """Turn ``(n_items, D)`` integer codes into an index, resolving collisions with ``<z_j>``."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] > len(LETTERS):
        raise ValueError(f"codes must be (n_items, D<= {len(LETTERS)}), got shape {codes.shape}")
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, row in enumerate(codes):
        groups[tuple(int(c) for c in row)].append(i)
    tokens: list[list[str]] = []
    for row in codes:
        tokens.append([f"<{LETTERS[m]}_{int(c)}>" for m, c in enumerate(row)])
    n_coll = 0
    largest = 1
    for members in groups.values():
        if len(members) > 1:
            n_coll += len(members)
            largest = max(largest, len(members))
            for j, it in enumerate(members):
                tokens[it].append(f"<z_{j}>")
    rep = dict(report or {})
    rep.update({"n_subvectors": int(codes.shape[1]), "n_colliding_items": n_coll,
                "n_collision_groups": sum(1 for m in groups.values() if len(m) > 1),
                "largest_collision_group": largest, "collision_rule": "extra <z_j> token"})
    return ItemIndex("semantic", tokens, leaky=False, report=rep)


def semantic_index(texts: Sequence[str], n_subvectors: int = 4, n_centroids: int = 64, opq: bool = False,
                   seed: int = 0, encoder=None, embeddings: np.ndarray | None = None,
                   small_catalog: str = "keep", progress: bool = False,
                   fit_items: Sequence[int] | np.ndarray | None = None) -> tuple[ItemIndex, object]:
    """Embed item texts, fit a ProductQuantizer, return (index, fitted quantizer).

    ``fit_items`` restricts the quantizer fit to those items (the ones with training events, as
    VQ-Rec does), after which every item, new ones included, is encoded with it.
    ``embeddings`` skips the encoder (tests, or vectors computed elsewhere). ``small_catalog``
    is the quantizer's rule when the catalog has fewer than 39 x K texts ("keep" trains the
    requested K anyway; see :mod:`textrec.text.quantize`).
    """
    import warnings

    from textrec.text.quantize import ProductQuantizer

    if embeddings is None:
        from textrec.text.encoder import TextEncoder

        enc = encoder or TextEncoder()
        embeddings = enc.encode(list(texts), progress=progress)
    emb = np.asarray(embeddings, dtype=np.float32)
    pq = ProductQuantizer(n_subvectors=n_subvectors, n_centroids=n_centroids, opq=opq, seed=seed,
                          small_catalog=small_catalog)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quantizer records the small-catalog decision in its report
        pq.fit(emb if fit_items is None else emb[np.asarray(fit_items, dtype=np.int64)])
    codes = pq.encode(emb)
    index = codes_to_index(codes, report={"fit_items": len(emb) if fit_items is None else int(len(fit_items)),
                                          "quantizer": pq.config(), "n_centroids_effective": pq.n_centroids_,
                                          "quantizer_notes": pq.report.get("notes", [])})
    return index, pq
