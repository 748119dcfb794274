"""A user as several personas (AMP-CF style) on top of the SASRec encoder.

The causal encoder turns a history into contextual states ``H`` (one per history item). From
the state of the latest position, ``K`` persona queries are formed; persona ``k`` is an
attention pool of ``H`` (``alpha_k``, a distribution over the history), so each persona is a
weighted set of history items. A candidate item ``i`` is scored with candidate-dependent
attention over the personas (Barkan et al., *Attentive Multi-Persona Collaborative
Filtering*, 2020)::

    s_k(i) = <p_k, q_i>,   a_k(i) = softmax_k(s_k(i) / temperature),   score(i) = sum_k a_k(i) s_k(i)

so an item is scored mostly by the persona it matches best, and a list can serve several
personas at once. ``recommend_with_personas`` names, for every recommended item, the persona
that dominates its score (``argmax_k a_k(i)``) and the history items with the largest weight
in that persona: the explanation is read off the model's own weights, not fitted after the fact.

Training, early stopping and persistence are SASRec's (all-position softmax cross-entropy
through the shared trainer; the persona scoring enters through ``score_hidden``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from textrec.models.backbone import BackboneConfig, CausalSequenceEncoder, pad_left
from textrec.models.sasrec import SASRec
from textrec.models.seq_trainer import resolve_device, seeded

__all__ = ["PersonaModule", "PersonaRec"]


class PersonaModule(nn.Module):
    """Item table + causal encoder + ``K`` query heads; hidden states are the K personas
    flattened to ``K * d`` so the shared trainer can carry them as one vector per position."""

    def __init__(self, n_items: int, cfg: BackboneConfig, n_personas: int, temperature: float) -> None:
        super().__init__()
        d = cfg.hidden
        self.n_personas, self.temperature = int(n_personas), float(temperature)
        self.items = nn.Embedding(n_items, d)
        nn.init.normal_(self.items.weight, std=cfg.init_std)
        self.encoder = CausalSequenceEncoder(cfg)
        self.queries = nn.Linear(d, n_personas * d)
        nn.init.normal_(self.queries.weight, std=cfg.init_std)
        nn.init.zeros_(self.queries.bias)

    def item_representations(self) -> torch.Tensor:
        return self.items.weight

    def personas(self, items: torch.Tensor, mask: torch.Tensor, item_reps: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Personas (B, L, K, d) at every position and their weights over the history (B, L, K, L)."""
        reps = self.item_representations() if item_reps is None else item_reps
        mask = mask.bool()
        h = self.encoder(reps[items], mask)
        b, length, d = h.shape
        q = self.queries(h).view(b, length, self.n_personas, d)
        logits = torch.einsum("blkd,bjd->blkj", q, h) / math.sqrt(d)
        # position t pools items s <= t that are real; the diagonal keeps padded rows finite
        causal = torch.ones(length, length, dtype=torch.bool, device=h.device).tril()
        allowed = (causal[None] & mask[:, None, :]) | torch.eye(length, dtype=torch.bool, device=h.device)[None]
        alpha = torch.softmax(logits.masked_fill(~allowed[:, :, None, :], float("-inf")), dim=-1)
        return torch.einsum("blkj,bjd->blkd", alpha, h), alpha

    def encode(self, items: torch.Tensor, mask: torch.Tensor, item_reps: torch.Tensor | None = None) -> torch.Tensor:
        p, _ = self.personas(items, mask, item_reps)
        return p.flatten(2) * mask.unsqueeze(-1).to(p.dtype)

    def persona_scores(self, hidden: torch.Tensor, reps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-persona scores ``s`` (N, K, n_items) and candidate attention ``a`` (N, K, n_items)."""
        p = hidden.view(hidden.shape[0], self.n_personas, -1)
        s = p @ reps.T
        return s, torch.softmax(s / self.temperature, dim=1)

    def score_hidden(self, hidden: torch.Tensor, reps: torch.Tensor) -> torch.Tensor:
        s, a = self.persona_scores(hidden, reps)
        return (a * s).sum(1)


class PersonaRec(SASRec):
    """SASRec encoder with ``n_personas`` candidate-attended personas per history.

    Built like SASRec (``PersonaRec.from_recipe("sasrec", n_personas=4)`` or keywords);
    ``recommend_with_personas`` / ``explain_recommendation`` say which persona, made of which
    history items, each recommendation serves.
    """

    name = "PersonaRec"

    def __init__(self, n_personas: int = 4, temperature: float = 1.0, **kwargs: Any) -> None:
        if n_personas < 1:
            raise ValueError(f"PersonaRec needs n_personas >= 1, got {n_personas}")
        if temperature <= 0:
            raise ValueError(f"PersonaRec needs temperature > 0, got {temperature}")
        if kwargs.get("id_table"):
            raise ValueError("PersonaRec has a collision-free item table only")
        super().__init__(**kwargs)
        self.n_personas, self.temperature = int(n_personas), float(temperature)

    @classmethod
    def from_recipe(cls, recipe: str | dict = "sasrec", seed: int | None = None,
                    max_epochs: int | None = None, **overrides: Any) -> PersonaRec:
        """A SASRec recipe (the encoder and trainer settings) with persona options on top."""
        from textrec.recipes import load_recipe

        data = dict(recipe) if isinstance(recipe, dict) else load_recipe(recipe)
        if data.get("model", "SASRec") not in ("SASRec", cls.__name__):
            raise ValueError(f"recipe is for '{data['model']}', not SASRec or {cls.__name__}")
        data["model"] = cls.__name__
        return super().from_recipe(data, seed=seed, max_epochs=max_epochs, **overrides)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_personas": self.n_personas, "temperature": self.temperature}

    def _build(self, n_items: int) -> PersonaModule:
        self.n_items = int(n_items)
        with seeded(self.trainer_config.seed):
            module = PersonaModule(self.n_items, self.backbone_config, self.n_personas, self.temperature)
        return module.to(resolve_device(self.trainer_config.device))

    # ---- explanations ---------------------------------------------------------------------
    @torch.no_grad()
    def _persona_view(self, history: np.ndarray) -> dict[str, Any]:
        if self.module is None:
            raise RuntimeError("PersonaRec is not fitted; call fit() or from_pretrained() first")
        hist = np.asarray(history, dtype=np.int64)
        if hist.ndim != 1 or (len(hist) and (hist.min() < 0 or hist.max() >= self.n_items)):
            raise ValueError(f"history must be item indexes in [0, {self.n_items}), got {hist.tolist()[:10]}")
        window = hist[-self.trainer_config.max_len:]
        was_training = self.module.training
        self.module.eval()
        try:
            device = next(self.module.parameters()).device
            items, mask = pad_left([window], self.trainer_config.max_len, device)
            reps = self.module.item_representations()
            personas, alpha = self.module.personas(items, mask, reps)
            s, a = self.module.persona_scores(personas[:, -1].flatten(1), reps)
        finally:
            self.module.train(was_training)
        n_real = len(window)
        # weights over the real history positions only (the window is right-aligned)
        alpha = alpha[0, -1, :, alpha.shape[-1] - n_real:].cpu().numpy() if n_real else np.zeros((self.n_personas, 0))
        return {"window": window, "alpha": alpha, "s": s[0].cpu(), "a": a[0].cpu()}

    def _explain(self, view: dict[str, Any], item: int, n_because: int) -> dict[str, Any]:
        a, s = view["a"][:, item], view["s"][:, item]
        k = int(torch.argmax(a))
        weights = view["alpha"][k]
        top = np.argsort(-weights, kind="stable")[:n_because]
        return {"item": int(item), "score": float((a * s).sum()), "persona": k,
                "persona_weight": round(float(a[k]), 4),
                "persona_weights": [round(float(x), 4) for x in a],
                "because_of": [{"item": int(view["window"][j]), "weight": round(float(weights[j]), 4)}
                               for j in top]}

    def recommend_with_personas(self, history: np.ndarray | list[int], k: int = 10, exclude_history: bool = True,
                                n_because: int = 3) -> list[dict[str, Any]]:
        """Top-k items, each with the persona that scores it and the history items behind that persona.

        Every entry: ``item``, ``score``, ``persona`` (index among this history's personas),
        ``persona_weight`` (its share of the candidate attention), ``persona_weights`` (all K)
        and ``because_of``: the ``n_because`` history items with the largest weight in that
        persona. Scores equal :meth:`score`'s.
        """
        view = self._persona_view(np.asarray(history, dtype=np.int64))
        scores = (view["a"] * view["s"]).sum(0)
        if exclude_history and len(history):
            scores[torch.as_tensor(np.asarray(history, dtype=np.int64))] = float("-inf")
        top = torch.topk(scores, min(k, len(scores)))
        return [self._explain(view, int(i), n_because) for i, v in zip(top.indices, top.values)
                if torch.isfinite(v)]

    def recommend_ids(self, history_ids: list[str] | None = None, user_id: str | None = None, k: int = 10,
                      exclude_history: bool = True, n_because: int = 3) -> list[dict[str, Any]]:
        """``Recommender.recommend_ids`` with the reason attached to each entry.

        Every entry: ``id``, ``title``, ``score`` (as for any recommender), ``persona``,
        ``persona_weight`` and ``because_of``: ``[{id, title, weight}]``, the history items that
        form the persona serving that item.
        """
        if self.catalog is None:
            raise RuntimeError("PersonaRec has no catalog: fit it on a TrainView or load a saved one")
        hist: list[int] = []
        if user_id is not None:
            if self.users is None:
                raise RuntimeError("this model was saved without users: pass a history instead")
            hist = list(self.users.histories[self.users.index(user_id)])
        if history_ids:
            hist += [int(i) for i in self.catalog.indices(history_ids)]
        recs = self.recommend_with_personas(np.asarray(hist, dtype=np.int64), k=k,
                                            exclude_history=exclude_history, n_because=n_because)
        cat = self.catalog
        return [{"id": cat.id(r["item"]), "title": cat.title(r["item"]), "score": r["score"],
                 "persona": r["persona"], "persona_weight": r["persona_weight"],
                 "because_of": [{"id": cat.id(b["item"]), "title": cat.title(b["item"]), "weight": b["weight"]}
                                for b in r["because_of"]]} for r in recs]

    def explain_recommendation(self, history: np.ndarray | list[int], item: int,
                               n_because: int = 3) -> dict[str, Any]:
        """Why ``item`` is scored as it is for ``history``: its persona and that persona's history items."""
        if not 0 <= int(item) < int(self.n_items or 0):
            raise ValueError(f"item {item} is outside the catalog [0, {self.n_items})")
        return self._explain(self._persona_view(np.asarray(history, dtype=np.int64)), int(item), n_because)

    def persona_summary(self, history: np.ndarray | list[int], n_items: int = 5) -> list[dict[str, Any]]:
        """Each persona of a history as its ``n_items`` heaviest history items."""
        view = self._persona_view(np.asarray(history, dtype=np.int64))
        out = []
        for k, w in enumerate(view["alpha"]):
            top = np.argsort(-w, kind="stable")[:n_items]
            out.append({"persona": k, "items": [{"item": int(view["window"][j]), "weight": round(float(w[j]), 4)}
                                                for j in top]})
        return out
