"""A seeded synthetic interaction log for scale tests: power-law popularity, learnable sequences, titles.

``synthetic_log(n_events)`` grows users and items with the log (by default 1 user per 10 events
and 1 item per 50: 10M events = about 1M users and 200k items) and returns plain NumPy
columns; ``write_log`` writes them as a Parquet / CSV / JSONL event table plus a Parquet item
table, which ``textrec.data.loaders.tabular.load_table`` (and ``--columns``) read back.

Structure a model can learn: items sit on a hidden ring (a seeded permutation). With
probability ``p_follow`` a user's next item is one of the next ``hop`` items on the ring after
their previous one (a Markov chain or SASRec learns it); otherwise it is drawn from the
power-law popularity (``popularity ~ 1 / (rank + 10) ** alpha``). Ring neighbourhoods of 64
items share a topic word in their titles, so a text model can learn the structure too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: syllables for pseudo-words: a seeded vocabulary with no real-world meaning
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "fi", "gu", "ha", "je", "bo",
              "ri", "mu", "te", "xa", "yo", "ce", "di", "lu")
TOPIC_SPAN = 64  # ring items per topic word


@dataclass
class SyntheticLog:
    """Event columns (time-ordered within each user, users in order) and the item catalog."""

    users: np.ndarray       # int64 user ids 0..n_users-1
    items: np.ndarray       # int64 item ids 0..n_items-1
    timestamps: np.ndarray  # int64 seconds, increasing within each user
    titles: list[str]
    n_users: int
    n_items: int
    seed: int

    @property
    def n_events(self) -> int:
        return len(self.users)


def sizes_for(n_events: int, events_per_user: float = 10.0, events_per_item: float = 50.0) -> tuple[int, int]:
    """(users, items) for a log of ``n_events``: they grow linearly with it."""
    return max(int(n_events / events_per_user), 10), max(int(n_events / events_per_item), 20)


def _vocabulary(rng: np.random.Generator, n_words: int) -> list[str]:
    words: set[str] = set()
    out: list[str] = []
    while len(out) < n_words:
        k = int(rng.integers(2, 4))
        w = "".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), k))
        if w not in words:
            words.add(w)
            out.append(w)
    return out


def item_titles(n_items: int, ring_pos: np.ndarray, rng: np.random.Generator, n_words: int = 3000) -> list[str]:
    """A title per item: its ring neighbourhood's topic word plus 2-4 random vocabulary words."""
    vocab = _vocabulary(rng, n_words)
    n_topics = max(n_items // TOPIC_SPAN, 1)
    topic_words = [vocab[i % len(vocab)] for i in rng.permutation(max(n_topics, 1))]
    lens = rng.integers(2, 5, size=n_items)
    picks = rng.integers(0, len(vocab), size=int(lens.sum()))
    starts = np.concatenate([[0], np.cumsum(lens)])
    titles = []
    for i in range(n_items):
        topic = topic_words[min(int(ring_pos[i]) // TOPIC_SPAN, n_topics - 1)]
        words = [vocab[j] for j in picks[starts[i]:starts[i + 1]]]
        titles.append(" ".join([topic.capitalize(), *words]))
    return titles


def synthetic_log(n_events: int, seed: int = 0, n_users: int | None = None, n_items: int | None = None,
                  alpha: float = 1.0, p_follow: float = 0.6, hop: int = 3, min_len: int = 3) -> SyntheticLog:
    """Generate about ``n_events`` events (exactly the sum of the drawn user lengths).

    Lengths per user are ``min_len`` + a geometric draw with the mean that makes the total come
    out at ``n_events``; generation is vectorised over users (one NumPy step per position).
    """
    if n_events < 100:
        raise ValueError("synthetic_log needs n_events >= 100")
    rng = np.random.default_rng(seed)
    du, di = sizes_for(n_events)
    n_users = n_users or du
    n_items = n_items or di
    mean_extra = max(n_events / n_users - min_len, 0.1)
    lens = min_len + rng.geometric(1.0 / (mean_extra + 1.0), size=n_users) - 1
    lens = np.minimum(lens, 2000)
    ring = rng.permutation(n_items)          # ring position -> item
    ring_pos = np.empty(n_items, np.int64)   # item -> ring position
    ring_pos[ring] = np.arange(n_items)
    pop = 1.0 / (np.arange(n_items) + 10.0) ** alpha
    pop_items = rng.permutation(n_items)     # popularity rank -> item (independent of the ring)
    cdf = np.cumsum(pop / pop.sum())

    def popular(k: int) -> np.ndarray:
        return pop_items[np.minimum(np.searchsorted(cdf, rng.random(k)), n_items - 1)]

    starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    total = int(starts[-1])
    items = np.empty(total, np.int64)
    items[starts[:-1]] = popular(n_users)
    order = np.argsort(-lens, kind="stable")  # users still active at step t are a prefix of this order
    sorted_lens = lens[order]
    for t in range(1, int(lens.max())):
        n_active = int(np.searchsorted(-sorted_lens, -t, side="left"))  # users with len > t
        if n_active == 0:
            break
        who = order[:n_active]
        prev = items[starts[who] + t - 1]
        follow = rng.random(n_active) < p_follow
        nxt = popular(n_active)
        step = rng.integers(1, hop + 1, size=n_active)
        chained = ring[(ring_pos[prev] + step) % n_items]
        items[starts[who] + t] = np.where(follow, chained, nxt)
    users = np.repeat(np.arange(n_users, dtype=np.int64), lens)
    t0 = 1_500_000_000 + rng.integers(0, 86_400 * 365, size=n_users)
    gaps = rng.integers(60, 86_400, size=total)
    gaps[starts[:-1]] = 0
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[starts[:-1]], lens)
    timestamps = np.repeat(t0, lens) + within
    return SyntheticLog(users=users, items=items, timestamps=timestamps.astype(np.int64),
                        titles=item_titles(n_items, ring_pos, rng), n_users=n_users, n_items=n_items, seed=seed)


def write_log(log: SyntheticLog, folder: str | Path, fmt: str = "parquet", shuffle: bool = True,
              seed: int = 0) -> tuple[Path, Path]:
    """Write the events (``user_id, item_id, timestamp``; rows shuffled like a real export unless
    ``shuffle=False``) as ``events.<fmt>`` and the catalog as ``items.parquet``; return both paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    idx = np.random.default_rng(seed + 1).permutation(log.n_events) if shuffle else np.arange(log.n_events)
    table = pa.table({"user_id": pa.array(log.users[idx]), "item_id": pa.array(log.items[idx]),
                      "timestamp": pa.array(log.timestamps[idx])})
    events = folder / f"events.{fmt}"
    tmp = events.with_name(events.name + ".tmp")
    if fmt == "parquet":
        pq.write_table(table, tmp, row_group_size=1 << 20)
    elif fmt in ("csv", "tsv"):
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(delimiter="," if fmt == "csv" else "\t"))
    elif fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for start in range(0, log.n_events, 1 << 20):
                part = idx[start:start + (1 << 20)]
                u, i, ts = log.users[part], log.items[part], log.timestamps[part]
                f.write("".join(f'{{"user_id": {a}, "item_id": {b}, "timestamp": {c}}}\n'
                                for a, b, c in zip(u.tolist(), i.tolist(), ts.tolist())))
    else:
        raise ValueError(f"unknown format '{fmt}' (parquet, csv, tsv, jsonl)")
    tmp.replace(events)
    items = folder / "items.parquet"
    if not items.exists():
        tmp = items.with_name("items.parquet.tmp")
        pq.write_table(pa.table({"item_id": pa.array(np.arange(log.n_items, dtype=np.int64)),
                                 "title": pa.array(log.titles)}), tmp)
        tmp.replace(items)
    return events, items


__all__ = ["SyntheticLog", "synthetic_log", "write_log", "sizes_for", "item_titles"]
