"""Faithfulness a user can check: citations, grounding and unsupported aspects of each explanation.

* ``cite``: the retrieved sentences an explanation draws on — those sharing content words with it,
  most overlap first. A model that was given retrieved sentences always cites at least one: when
  none shares a word, it cites the sentence it was conditioned on first (its copy source), and the
  grounding score then says plainly that nothing was taken from it.
* ``grounding``: share of the explanation's content words found in its cited sentences or in the
  item's own text (title, description) — 1.0 means every content word can be checked in a source.
* ``unsupported_aspects``: aspects of the vocabulary that the explanation mentions but that appear in
  no source the model saw (retrieved sentences, item text, the selected aspects): hallucinations
  at the level a reader cares about ("the strap" of a cable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textrec.explain.sentences import Retrieved
from textrec.text.words import content_words, words


def cite(explanation: str, retrieved: Sequence[Retrieved], max_cited: int = 3,
         at_least_one: bool = False) -> list[Retrieved]:
    """Retrieved sentences sharing content words with the explanation, most overlap first.

    ``at_least_one``: with no overlap, cite the first retrieved sentence (the model's input) anyway.
    """
    cw = content_words(words(explanation))
    scored = [(len(cw & content_words(words(r.text))), k, r) for k, r in enumerate(retrieved)]
    out = [r for n, _, r in sorted(scored, key=lambda x: (-x[0], x[1])) if n > 0][:max_cited]
    if not out and at_least_one and len(retrieved):
        out = [retrieved[0]]
    return out


def grounding(explanation: str, sources: Sequence[str]) -> float:
    """Share of the explanation's content words found in ``sources`` (nan when it has none)."""
    cw = content_words(words(explanation))
    if not cw:
        return float("nan")
    support: set[str] = set()
    for s in sources:
        support |= content_words(words(s))
    return len(cw & support) / len(cw)


def unsupported_aspects(explanation: str, vocab, sources: Sequence[str], given: Sequence[str] = ()) -> list[str]:
    """Aspects (``vocab.find``) in the explanation that no source text mentions and were not given."""
    said = vocab.find(words(explanation))
    if not said:
        return []
    seen = set(given)
    for s in sources:
        seen.update(vocab.find(words(s)))
    return [a for a in said if a not in seen]


@dataclass
class Faithfulness:
    """Per-explanation checks of one model on one split (parallel lists)."""

    cited: list[list[int]] = field(default_factory=list)  # sentence ids in the index
    grounding: list[float] = field(default_factory=list)
    unsupported: list[list[str]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Mean/median grounding, share citing >= 1 sentence, share with an unsupported aspect."""
        g = np.asarray(self.grounding, dtype=np.float64)
        ok = g[~np.isnan(g)]
        n = max(len(self.cited), 1)
        return {"grounding": float(ok.mean()) if len(ok) else float("nan"),
                "grounding_median": float(np.median(ok)) if len(ok) else float("nan"),
                "grounding_ge_0.5": float((ok >= 0.5).mean()) if len(ok) else float("nan"),
                "grounding_undefined": int(np.isnan(g).sum()),
                "cites_at_least_one": sum(bool(c) for c in self.cited) / n,
                "mean_cited": sum(len(c) for c in self.cited) / n,
                "unsupported_aspect_rate": sum(bool(u) for u in self.unsupported) / n}

    def histogram(self, bins: int = 10) -> dict[str, list]:
        """Counts of grounding scores in ``bins`` equal bins over [0, 1] (for JSON)."""
        g = np.asarray(self.grounding, dtype=np.float64)
        counts, edges = np.histogram(g[~np.isnan(g)], bins=bins, range=(0.0, 1.0))
        return {"edges": [round(float(e), 3) for e in edges], "counts": counts.tolist()}


def check(explanations: Sequence[str], examples: Sequence, vocab, item_texts: Sequence[str] | None = None,
          conditioned: bool = True, citations: Sequence[Sequence[Retrieved]] | None = None) -> Faithfulness:
    """Cite, score grounding and find unsupported aspects for each (explanation, example).

    ``conditioned``: the model was given the retrieved sentences (then it always cites one).
    ``citations``: what each explanation cites, when the model says so itself (the extractive
    explainer quotes one sentence of the item's reviews); otherwise found among the retrieved ones.
    """
    out = Faithfulness()
    for k, (text, ex) in enumerate(zip(explanations, examples)):
        cited = list(citations[k]) if citations is not None else cite(text, ex.retrieved, at_least_one=conditioned)
        item = [item_texts[ex.item]] if item_texts is not None and item_texts[ex.item] else []
        out.cited.append([r.sid for r in cited])
        out.grounding.append(grounding(text, [r.text for r in cited] + item))
        seen = [r.text for r in ex.retrieved] + [r.text for r in cited] + item
        out.unsupported.append(unsupported_aspects(text, vocab, seen, ex.aspects))
    return out


def plot_grounding(results: dict[str, Faithfulness], path: str | Path, title: str = "") -> Path:
    """One histogram panel per model of per-explanation grounding; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        g = np.asarray(results[name].grounding, dtype=np.float64)
        g = g[~np.isnan(g)]
        ax.hist(g, bins=10, range=(0, 1), color="#4c72b0")
        ax.axvline(g.mean() if len(g) else 0, color="#c44e52", ls="--", label=f"mean {g.mean():.2f}" if len(g) else "")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("grounding")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("explanations")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
