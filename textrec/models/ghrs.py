"""GHRS-style side-information recommender for cold start (Darban & Valipour, 2022).

Users are described by rating-graph features (degree, PageRank, average neighbour degree,
clustering coefficient, eigenvector centrality of the user-user co-interaction graph) plus
their attributes (ML-100K: age band, gender, occupation). A denoising autoencoder compresses
these features; its code is clustered with k-means; a cluster's taste is the item popularity
among its training users. A user is scored by their soft cluster membership; a *new user* with
no events takes the mean membership of the training users nearest to them in the code of
attributes alone (the autoencoder is trained with the graph block dropped for half the users,
so that an attribute-only input still gives a meaningful code).

Items are described the same way (item-item graph features + attributes such as genres, through
a second autoencoder). A *new item* has no events, so its per-cluster taste is the
similarity-weighted taste of its nearest warm items in the item code space; and a history adds
a content term (mean code similarity of the candidate to the history items). Scores are
``sum_c w_c(user) * taste_c(item) + history_weight * sim(item, history)``, with the taste of new
items multiplied by ``new_item_boost`` (how much room new items get in a list; set on valid).

Side information is supplied before fitting with :meth:`GHRS.set_side_info` (arrays aligned to
the dataset's user and item indexes); :func:`movielens_side_info` builds them for ML-100K.
Without it GHRS uses the graph features alone (and then cannot place users without events).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from textrec.data.dataset import DataError
from textrec.models.base import Recommender, TrainView
from textrec.models.baselines import interaction_matrix
from textrec.models.seq_trainer import seeded
from textrec.options import progress_bar as tqdm

__all__ = ["GHRS", "graph_features", "movielens_side_info", "AGE_BANDS"]

#: ML-100K age bands (upper bounds, exclusive) as in the GHRS paper's categorisation
AGE_BANDS = (18, 25, 35, 45, 50, 56)
#: refuse dense node-node graphs beyond this many nodes (memory grows with the square)
MAX_GRAPH_NODES = 20_000


def graph_features(x: np.ndarray | Any, min_overlap: int = 1, quantile: float = 0.9) -> np.ndarray:
    """Five graph features per row node of a binary (nodes x things) matrix.

    Nodes are linked when they share at least ``min_overlap`` things and their Jaccard
    similarity is above the ``quantile`` of the positive similarities (a sparse, meaningful
    graph). Returns (n_nodes, 5): degree share, PageRank, mean neighbour degree share,
    clustering coefficient, eigenvector centrality, each scaled to [0, 1]; isolated nodes and
    nodes without events get zeros.
    """
    import scipy.sparse as sp

    x = sp.csr_matrix(x, dtype=np.float32)
    n = x.shape[0]
    if n > MAX_GRAPH_NODES:
        raise ValueError(f"graph_features builds a dense {n}x{n} graph; more than {MAX_GRAPH_NODES} nodes "
                         f"is refused")
    inter = np.asarray((x @ x.T).toarray(), dtype=np.float64)
    size = np.diag(inter).copy()
    np.fill_diagonal(inter, 0.0)
    union = size[:, None] + size[None, :] - inter
    jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    pos = jac[(jac > 0) & (inter >= min_overlap)]
    thr = np.quantile(pos, quantile) if len(pos) else np.inf
    adj = ((jac >= thr) & (inter >= min_overlap)).astype(np.float64)
    np.fill_diagonal(adj, 0.0)
    deg = adj.sum(1)
    # PageRank by power iteration (damping 0.85; dangling nodes spread uniformly)
    pr = np.full(n, 1.0 / n)
    out_w = np.divide(1.0, deg, out=np.zeros(n), where=deg > 0)
    for _ in range(50):
        pr = 0.15 / n + 0.85 * (adj.T @ (pr * out_w) + pr[deg == 0].sum() / n)
    nbr = np.divide(adj @ deg, deg, out=np.zeros(n), where=deg > 0)
    tri = np.einsum("ij,ij->i", adj @ adj, adj)  # 2 x triangles through each node
    clus = np.divide(tri, deg * (deg - 1), out=np.zeros(n), where=deg > 1)
    ev = np.ones(n) / np.sqrt(n)
    for _ in range(100):
        nxt = adj @ ev + 1e-12
        ev = nxt / np.linalg.norm(nxt)
    feats = np.stack([deg, pr, nbr, clus, np.abs(ev)], axis=1)
    feats[size == 0] = 0.0
    top = feats.max(0)
    return (feats / np.where(top > 0, top, 1.0)).astype(np.float32)


def _read_user_file(folder: Path) -> pd.DataFrame:
    """ML-100K users: RecBole atomic ``ml-100k.user`` or GroupLens ``u.user``."""
    atomic, grouplens = folder / "ml-100k.user", folder / "u.user"
    if atomic.is_file():
        frame = pd.read_csv(atomic, sep="\t", dtype=str)
        frame.columns = [c.split(":")[0] for c in frame.columns]
        path = atomic
    elif grouplens.is_file():
        frame = pd.read_csv(grouplens, sep="|", header=None, dtype=str, encoding="latin-1",
                            names=["user_id", "age", "gender", "occupation", "zip_code"])
        path = grouplens
    else:
        raise DataError("no ml-100k.user or u.user file with user attributes", path=str(folder))
    for col in ("user_id", "age", "gender", "occupation"):
        if col not in frame.columns:
            raise DataError(f"the user file has no '{col}' column", path=str(path), field=col)
    age = pd.to_numeric(frame["age"], errors="coerce")
    bad = age.isna() | frame["gender"].isna() | frame["occupation"].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError("missing or non-numeric user attribute", path=str(path), line=i + 2,
                        field="age" if age.isna().iloc[i] else "gender/occupation")
    return frame.assign(age=age)


def movielens_side_info(dataset, folder: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(user features, item features, names) aligned to ``dataset``'s user and item indexes.

    Users: one-hot age band (:data:`AGE_BANDS`), gender, one-hot occupation. Items: multi-hot
    genres from the dataset's ``genres`` field. ``folder`` defaults to the recbole wheel's
    ML-100K folder (where the dataset is read from).
    """
    from textrec.data.loaders.movielens import recbole_ml100k_dir

    users = _read_user_file(Path(folder) if folder else recbole_ml100k_dir())
    by_id = users.set_index(users["user_id"].astype(str))
    ids = [str(u) for u in dataset.user_ids]
    missing = [u for u in ids if u not in by_id.index]
    if missing:
        raise DataError(f"{len(missing)} dataset users have no attributes, e.g. '{missing[0]}'", field="user_id")
    rows = by_id.loc[ids]
    band = np.searchsorted(np.array(AGE_BANDS), rows["age"].to_numpy(), side="right")
    occupations = sorted(users["occupation"].unique())
    occ = pd.Categorical(rows["occupation"], categories=occupations).codes
    uf = np.zeros((len(ids), len(AGE_BANDS) + 1 + 1 + len(occupations)), np.float32)
    uf[np.arange(len(ids)), band] = 1.0
    uf[:, len(AGE_BANDS) + 1] = (rows["gender"].to_numpy() == "F").astype(np.float32)
    uf[np.arange(len(ids)), len(AGE_BANDS) + 2 + occ] = 1.0
    if "genres" not in dataset.items.columns:
        raise DataError("the dataset's items have no 'genres' field", field="genres")
    genre_lists = [str(g).split() for g in dataset.items.sort_values("item")["genres"].fillna("")]
    genres = sorted({g for gl in genre_lists for g in gl})
    col = {g: j for j, g in enumerate(genres)}
    itf = np.zeros((dataset.n_items, len(genres)), np.float32)
    for i, gl in enumerate(genre_lists):
        itf[i, [col[g] for g in gl]] = 1.0
    names = {"user": [f"age<{b}" for b in AGE_BANDS] + [f"age>={AGE_BANDS[-1]}", "female"]
             + [f"occupation={o}" for o in occupations], "item": [f"genre={g}" for g in genres]}
    return uf, itf, names


class _FeatureAutoencoder(nn.Module):
    def __init__(self, n_in: int, hidden: int, code: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, code))
        self.dec = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, n_in))


def _train_autoencoder(feats: np.ndarray, graph_cols: int, hidden: int, code: int, epochs: int, seed: int,
                       drop_graph: float = 0.5) -> _FeatureAutoencoder:
    """Denoising AE: the first ``graph_cols`` columns are zeroed for a share of rows each step
    and must be reconstructed, so a node without graph features still gets a fitting code."""
    with seeded(seed):
        ae = _FeatureAutoencoder(feats.shape[1], hidden, code)
    x = torch.from_numpy(feats)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    for _ in range(epochs):
        drop = (torch.rand(len(x), 1, generator=gen) < drop_graph).float()
        mask = torch.ones_like(x)
        mask[:, :graph_cols] = 1.0 - drop
        loss = F.mse_loss(ae.dec(ae.enc(x * mask)), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ae.eval()


def _kmeans(z: np.ndarray, k: int, seed: int, iters: int = 50) -> np.ndarray:
    """Centroids of a seeded k-means++ (scikit-learn's) on the rows of ``z``."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(z)))
    return KMeans(n_clusters=k, n_init=4, max_iter=iters, random_state=seed).fit(z).cluster_centers_


class GHRS(Recommender):
    """Graph + attribute features -> autoencoder -> clusters; scores new users and new items."""

    name = "GHRS"
    scores_new_items = True

    def __init__(self, n_clusters: int = 8, code: int = 8, hidden: int = 32, ae_epochs: int = 300,
                 temperature: float = 0.2, item_neighbours: int = 20, history_weight: float = 0.5,
                 user_neighbours: int = 50, new_item_boost: float = 1.0, seed: int = 0) -> None:
        if min(n_clusters, code, hidden, ae_epochs, item_neighbours, user_neighbours) < 1:
            raise ValueError("GHRS needs n_clusters, code, hidden, ae_epochs, item/user_neighbours >= 1")
        if temperature <= 0 or history_weight < 0 or new_item_boost <= 0:
            raise ValueError("GHRS needs temperature > 0, history_weight >= 0 and new_item_boost > 0")
        self.n_clusters, self.code, self.hidden, self.ae_epochs = int(n_clusters), int(code), int(hidden), int(ae_epochs)
        self.temperature, self.item_neighbours = float(temperature), int(item_neighbours)
        self.history_weight, self.seed = float(history_weight), int(seed)
        self.user_neighbours = int(user_neighbours)
        self.new_item_boost = float(new_item_boost)
        self.cold_items: torch.Tensor | None = None       # (n_items,) bool: no training events
        self.user_side: np.ndarray | None = None
        self.item_side: np.ndarray | None = None
        self.user_membership: torch.Tensor | None = None  # (n_users, C) soft cluster weights
        self.taste: torch.Tensor | None = None            # (C, n_items) per-cluster item scores
        self.item_code: torch.Tensor | None = None        # (n_items, code) unit-norm item codes

    def set_side_info(self, user_features: np.ndarray, item_features: np.ndarray) -> GHRS:
        """Attributes aligned to user and item indexes (e.g. from :func:`movielens_side_info`)."""
        self.user_side = np.asarray(user_features, dtype=np.float32)
        self.item_side = np.asarray(item_features, dtype=np.float32)
        if self.user_side.ndim != 2 or self.item_side.ndim != 2:
            raise ValueError("side information must be 2-d arrays (rows = users / items)")
        return self

    def get_config(self) -> dict[str, Any]:
        return {"n_clusters": self.n_clusters, "code": self.code, "hidden": self.hidden,
                "ae_epochs": self.ae_epochs, "temperature": self.temperature,
                "item_neighbours": self.item_neighbours, "history_weight": self.history_weight,
                "user_neighbours": self.user_neighbours, "new_item_boost": self.new_item_boost, "seed": self.seed}

    def fit(self, data: TrainView, progress: bool = True) -> GHRS:
        if self.user_side is None:  # no side information: graph features only
            self.set_side_info(np.zeros((data.n_users, 0)), np.zeros((data.n_items, 0)))
        if len(self.user_side) != data.n_users or len(self.item_side) != data.n_items:
            raise ValueError(f"side information has {len(self.user_side)} users x {len(self.item_side)} items; "
                             f"the data has {data.n_users} x {data.n_items}")
        steps = tqdm(total=4, desc=f"fit {self.name}", disable=not progress)
        x = interaction_matrix(data.train, data.n_users, data.n_items)
        active = np.asarray(x.sum(1)).ravel() > 0
        warm = np.asarray(x.sum(0)).ravel() > 0
        ug, ig = graph_features(x), graph_features(x.T)
        steps.update()
        # users: AE on [graph | attributes] of training users, clusters on their codes
        ufeat = np.hstack([ug, self.user_side])
        uae = _train_autoencoder(ufeat[active], ug.shape[1], self.hidden, self.code, self.ae_epochs, self.seed)
        attr_only = ufeat.copy()
        attr_only[:, :ug.shape[1]] = 0.0
        with torch.no_grad():
            uz = uae.enc(torch.from_numpy(ufeat)).numpy()
            uz_attr = uae.enc(torch.from_numpy(attr_only))
        centroids = _kmeans(uz[active], self.n_clusters, self.seed)
        dist = torch.cdist(torch.from_numpy(uz), torch.from_numpy(centroids.astype(np.float32)))
        scale = float(dist[torch.from_numpy(active)].mean()) or 1.0
        member = torch.softmax(-dist / (self.temperature * scale), dim=1)
        # a user without events takes the mean membership of the training users whose
        # attribute-only code is nearest: who users like them turned out to be
        cold_users = np.flatnonzero(~active)
        if len(cold_users) and active.any():
            act = torch.from_numpy(np.flatnonzero(active))
            d = torch.cdist(uz_attr[torch.from_numpy(cold_users)], uz_attr[act])
            k = min(self.user_neighbours, len(act))
            near = torch.topk(-d, k, dim=1).indices
            member[torch.from_numpy(cold_users)] = member[act[near]].mean(1)
        self.user_membership = member
        steps.update()
        # cluster taste on warm items: membership-weighted item popularity, normalised per cluster
        xt = torch.from_numpy(np.asarray(x.toarray(), dtype=np.float32))
        taste = self.user_membership.T @ xt
        taste = taste / taste.sum(1, keepdim=True).clamp_min(1e-12)
        # items: AE on [graph | attributes] of warm items; new items borrow their neighbours' taste
        ifeat = np.hstack([ig, self.item_side])
        iae = _train_autoencoder(ifeat[warm], ig.shape[1], self.hidden, self.code, self.ae_epochs, self.seed + 1)
        with torch.no_grad():
            iz = F.normalize(iae.enc(torch.from_numpy(ifeat)), dim=1)
        steps.update()
        cold = np.flatnonzero(~warm)
        if len(cold) and warm.any():
            warm_idx = torch.from_numpy(np.flatnonzero(warm))
            sim = iz[torch.from_numpy(cold)] @ iz[warm_idx].T
            k = min(self.item_neighbours, len(warm_idx))
            top = torch.topk(sim, k, dim=1)
            w = torch.softmax(top.values / 0.1, dim=1)  # sharp: the closest warm items dominate
            taste[:, torch.from_numpy(cold)] = (taste[:, warm_idx[top.indices]] * w[None]).sum(-1)
        self.taste, self.item_code = taste, iz
        self.cold_items = torch.from_numpy(~warm)
        steps.update()
        steps.close()
        return self

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> torch.Tensor:
        if self.taste is None:
            raise RuntimeError("GHRS is not fitted; call fit() or from_pretrained() first")
        users = np.asarray(users, dtype=np.int64)
        known = (users >= 0) & (users < len(self.user_membership))
        member = torch.full((len(users), self.taste.shape[0]), 1.0 / self.taste.shape[0])
        if known.any():
            member[torch.from_numpy(known)] = self.user_membership[torch.from_numpy(users[known])]
        # cluster taste is a distribution over items: rescale so one unit ~ the top item
        s = (member @ self.taste) / self.taste.max().clamp_min(1e-12)
        if self.new_item_boost != 1.0:
            # a borrowed taste is an average of neighbours, so it sits below the best warm items;
            # the boost (chosen on valid) sets how much room new items get in a list
            s[:, self.cold_items] *= self.new_item_boost
        if self.history_weight > 0:
            prof = torch.zeros(len(histories), self.item_code.shape[1])
            for r, h in enumerate(histories):
                if len(h):
                    prof[r] = self.item_code[torch.as_tensor(np.asarray(h, dtype=np.int64))].mean(0)
            s = s + self.history_weight * (F.normalize(prof, dim=1) @ self.item_code.T)
        return s

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.taste is None:
            raise RuntimeError("GHRS is not fitted: nothing to save")
        return {"user_membership": self.user_membership, "taste": self.taste, "item_code": self.item_code,
                "cold_items": self.cold_items.to(torch.uint8)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.user_membership = tensors["user_membership"].float()
        self.taste = tensors["taste"].float()
        self.item_code = tensors["item_code"].float()
        self.cold_items = tensors["cold_items"].bool()
