"""A prefix trie over item token-id sequences, for constrained decoding of item ids.

Every item's id (token ids, then EOS) is a path from the root; a node knows how many items lie
below it. ``allowed(prefix, banned)`` returns the tokens that continue ``prefix`` towards at
least one item that is *not* banned, so beam search can only produce real items the user has
not consumed yet. ``banned`` is a :class:`Banned` built once per user from the consumed items:
it counts, per node, how many banned items lie below (cost O(history x id length)).

Use it with ``model.generate(prefix_allowed_tokens_fn=trie.prefix_fn(banned_per_row, start))``
or through :class:`TrieLogitsProcessor`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch


class Banned:
    """Per-node counts of excluded items below, for one user."""

    __slots__ = ("counts", "items")

    def __init__(self, counts: dict[int, int], items: frozenset[int]):
        self.counts = counts
        self.items = items


class ItemTrie:
    """Prefix trie of item token-id sequences, each terminated by ``eos_id``."""

    def __init__(self, sequences: Sequence[Sequence[int]], eos_id: int):
        self.eos_id = int(eos_id)
        self.children: list[dict[int, int]] = [{}]
        self.n_below: list[int] = [0]
        self.leaf_item: dict[int, int] = {}  # node reached after EOS -> item
        self.paths: list[list[int]] = []  # per item, the node ids along its path (root excluded)
        for item, seq in enumerate(sequences):
            node, path = 0, []
            self.n_below[0] += 1
            for tok in list(seq) + [self.eos_id]:
                nxt = self.children[node].get(int(tok))
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][int(tok)] = nxt
                    self.children.append({})
                    self.n_below.append(0)
                node = nxt
                self.n_below[node] += 1
                path.append(node)
            if node in self.leaf_item:
                raise ValueError(f"items {self.leaf_item[node]} and {item} have the same token ids")
            self.leaf_item[node] = item
            self.paths.append(path)

    @property
    def n_items(self) -> int:
        return len(self.paths)

    def banned(self, items: Iterable[int]) -> Banned:
        """Exclusion counts for a set of items (e.g. the user's history)."""
        counts: dict[int, int] = {}
        items = frozenset(int(i) for i in items if 0 <= int(i) < self.n_items)
        for it in items:
            counts[0] = counts.get(0, 0) + 1
            for node in self.paths[it]:
                counts[node] = counts.get(node, 0) + 1
        return Banned(counts, items)

    def node_of(self, prefix: Sequence[int]) -> int | None:
        """The node reached by following ``prefix`` from the root, or None if it leaves the trie."""
        node = 0
        for tok in prefix:
            node = self.children[node].get(int(tok), -1)
            if node < 0:
                return None
        return node

    def allowed(self, prefix: Sequence[int], banned: Banned | None = None) -> list[int]:
        """Tokens that extend ``prefix`` towards at least one non-banned item."""
        node = self.node_of(prefix)
        if node is None:
            return []
        kids = self.children[node]
        if banned is None or not banned.counts:
            return list(kids)
        return [t for t, ch in kids.items() if self.n_below[ch] - banned.counts.get(ch, 0) > 0]

    def item_of(self, seq: Sequence[int]) -> int | None:
        """The item a full token sequence (EOS included or not) names, or None."""
        seq = [int(t) for t in seq]
        if not seq or seq[-1] != self.eos_id:
            seq = seq + [self.eos_id]
        node = self.node_of(seq)
        return None if node is None else self.leaf_item.get(node)

    def prefix_fn(self, banned_per_row: Sequence[Banned | None], n_skip: int = 1, pad_id: int = 0
                  ) -> Callable[[int, torch.Tensor], list[int]]:
        """A ``prefix_allowed_tokens_fn`` for ``generate``: row ``b`` uses ``banned_per_row[b]``.

        ``n_skip`` leading decoder tokens (the decoder start token) are not part of the id. A
        finished or dead beam gets only ``pad_id`` so it can never turn into an item again.
        """
        def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            prefix = input_ids[n_skip:].tolist()
            if prefix and prefix[-1] == self.eos_id:
                return [pad_id]
            ok = self.allowed(prefix, banned_per_row[batch_id])
            return ok if ok else [pad_id]
        return fn


class TrieLogitsProcessor:
    """A ``transformers`` LogitsProcessor masking every token the trie does not allow.

    ``rows_per_input`` is the number of beams: row ``r`` of the scores belongs to input
    ``r // rows_per_input``.
    """

    def __init__(self, trie: ItemTrie, banned_per_input: Sequence[Banned | None], rows_per_input: int,
                 n_skip: int = 1, pad_id: int = 0):
        self.fn = trie.prefix_fn(banned_per_input, n_skip=n_skip, pad_id=pad_id)
        self.rows_per_input = rows_per_input

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Set disallowed tokens to -inf."""
        mask = torch.full_like(scores, float("-inf"))
        for r in range(input_ids.shape[0]):
            mask[r, self.fn(r // self.rows_per_input, input_ids[r])] = 0.0
        return scores + mask
