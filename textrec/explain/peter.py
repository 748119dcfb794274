"""PETER-style transformer (Li et al., ACL 2021): a prefix of conditioning vectors, then the words.

One transformer over ``[prefix..., <bos>, w1 .. wn]`` with PETER's attention mask: the prefix
positions see each other; each word sees the whole prefix and the words before it. Three jointly
trained heads, as in the paper: rating from the first (user) position (MLP), *context prediction*
from the second (item) position (the bag of the explanation's words), next-word prediction from
the word positions. Decoding: greedy (as PETER) or beam search, within length bounds.

:class:`PeterModel` is the baseline: prefix = [user, item], no retrieval, no aspects. ERRA's
decoder (:class:`textrec.explain.generator.ERRADecoder`) is the same class with a longer prefix —
exactly how ERRA extends PETER — so the ablations differ only in what is conditioned on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from textrec.explain.base import ExplainModel
from textrec.explain.tokenizer import BOS, EOS, PAD, UNK, WordTokenizer

# token-type ids of the prefix and the words
T_USER, T_ITEM, T_ASPECT, T_SENTENCE, T_KEYWORD, T_WORD = range(6)


@dataclass
class PeterConfig:
    """PETER-style model size, loss weights and decoding bounds (``peter`` section of the recipe)."""

    d_model: int = 256
    d_ff: int = 1024
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.1
    max_target_words: int = 25
    min_words: int = 4
    max_words: int = 25
    num_beams: int = 1
    no_repeat_ngram: int = 0  # decoding: never repeat an n-gram of this size (0 = off)
    length_penalty: float = 1.0  # beam score = log-prob / length ** length_penalty
    top_p: float = 0.0  # > 0 with num_beams 1: nucleus sampling from the top_p mass (seed with torch)
    temperature: float = 1.0  # sampling temperature
    rating_weight: float = 0.1  # PETER's defaults: rating 0.1, context 1.0, text 1.0
    context_weight: float = 1.0
    rating_min: float = 1.0
    rating_max: float = 5.0


class PeterModel(ExplainModel):
    """The PETER-style transformer (see module docstring). Subclasses extend ``prefix``."""

    kind = "peter"
    config_class = PeterConfig

    @classmethod
    def prefix_size(cls, config) -> int:
        """Most prefix positions this configuration can produce."""
        return 2

    def __init__(self, config, tokenizer: WordTokenizer, rating_mean: float = 4.0):
        super().__init__(config, tokenizer, rating_mean)
        c = config
        self.n_words = tokenizer.user_offset  # users/items have their own tables here
        self._ids_cache: dict[tuple[str, int | None], list[int]] = {}
        self.user_emb = nn.Embedding(max(tokenizer.n_users, 1), c.d_model)
        self.item_emb = nn.Embedding(max(tokenizer.n_items, 1), c.d_model)
        self.word_emb = nn.Embedding(self.n_words, c.d_model, padding_idx=PAD)
        self.type_emb = nn.Embedding(6, c.d_model)
        self.pos_emb = nn.Embedding(self.prefix_size(c) + c.max_words + 3, c.d_model)
        layer = nn.TransformerEncoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        self.lm_head = nn.Linear(c.d_model, self.n_words)
        self.rating_head = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.Sigmoid(), nn.Linear(c.d_model, 1))
        nn.init.constant_(self.rating_head[-1].bias, self.rating_mean)

    # ---- inputs --------------------------------------------------------------------------
    def word_ids(self, text: str, max_len: int | None = None) -> list[int]:
        """Tokenizer ids mapped into this model's word table (user/item tokens become <unk>)."""
        # Collation re-encodes the same targets, aspects and sentences every epoch; profiled on
        # Instruments it was ~30% of a training step, so encodings are memoised per model.
        key = (text, max_len)
        hit = self._ids_cache.get(key)
        if hit is None:
            hit = [t if t < self.n_words else UNK for t in self.tokenizer.encode(text, max_len)]
            self._ids_cache[key] = hit
        return list(hit)

    def collate_prefix(self, examples: Sequence) -> dict[str, torch.Tensor]:
        """Prefix inputs of a batch (the baseline: users and items)."""
        return {"user": torch.tensor([e.user for e in examples]), "item": torch.tensor([e.item for e in examples])}

    def prefix(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prefix vectors (B, P, d), padding mask (B, P)); position 0 = user, 1 = item."""
        u = self.user_emb(batch["user"]) + self.type_emb.weight[T_USER]
        i = self.item_emb(batch["item"]) + self.type_emb.weight[T_ITEM]
        x = torch.stack([u, i], dim=1)
        return x, torch.zeros(x.shape[:2], dtype=torch.bool)

    def collate(self, examples: Sequence) -> dict[str, torch.Tensor]:
        """Prefix inputs + ``text`` = [<bos>, w1..wn, </s>] padded + ratings."""
        seqs = [[BOS] + self.word_ids(e.target, self.config.max_target_words) + [EOS] for e in examples]
        text = torch.full((len(seqs), max(map(len, seqs))), PAD, dtype=torch.long)
        for k, s in enumerate(seqs):
            text[k, :len(s)] = torch.tensor(s)
        return {**self.collate_prefix(examples), "text": text,
                "rating": torch.tensor([e.rating for e in examples], dtype=torch.float32)}

    # ---- model ---------------------------------------------------------------------------
    @staticmethod
    def peter_mask(length: int, n_prefix: int = 2) -> torch.Tensor:
        """Boolean (length, length) mask, True = blocked: causal, but the prefix sees itself fully."""
        mask = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        mask[:n_prefix, :n_prefix] = False
        return mask

    def _hidden(self, batch: dict[str, torch.Tensor], words: torch.Tensor) -> tuple[torch.Tensor, int]:
        pre, pre_pad = self.prefix(batch)
        n_pre = pre.shape[1]
        x = torch.cat([pre, self.word_emb(words) + self.type_emb.weight[T_WORD]], dim=1)
        length = x.shape[1]
        x = x + self.pos_emb(torch.arange(length))[None]
        pad = torch.cat([pre_pad, words == PAD], dim=1)
        return self.encoder(x, mask=self.peter_mask(length, n_pre), src_key_padding_mask=pad), n_pre

    def word_log_probs(self, hw: torch.Tensor, h: torch.Tensor, n_pre: int,
                       batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-word log-probabilities (B, T, V) at word states ``hw``; ``h`` = all states (copy models)."""
        return F.log_softmax(self.lm_head(hw), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses: ``loss`` (weighted total), ``text`` (next-word NLL), ``context``, ``rating``."""
        c, text = self.config, batch["text"]
        h, n_pre = self._hidden(batch, text[:, :-1])
        logp = self.word_log_probs(h[:, n_pre:], h, n_pre, batch)
        tl = F.nll_loss(logp.reshape(-1, self.n_words), text[:, 1:].reshape(-1), ignore_index=PAD)
        # context prediction: the item position predicts every word of the explanation (bag of words)
        ctx = F.log_softmax(self.lm_head(h[:, 1]), dim=-1)
        tgt = text[:, 1:]
        ok = (tgt != PAD) & (tgt != EOS)
        cl = -(ctx.gather(1, tgt) * ok).sum() / ok.sum().clamp(min=1)
        pred = self.rating_head(h[:, 0]).squeeze(-1)
        r = batch["rating"]
        okr = ~torch.isnan(r)
        rl = ((pred[okr] - r[okr]) ** 2).mean() if okr.any() else pred.sum() * 0.0
        loss = tl + c.context_weight * cl + c.rating_weight * rl
        return {"loss": loss, "text": tl.detach(), "context": cl.detach(), "rating": rl.detach()}

    @torch.no_grad()
    def predict_batch(self, batch: dict[str, torch.Tensor], num_beams: int = 1) -> tuple[list[str], list[float]]:
        """Greedy or beam decoding within [min_words, max_words]; clipped ratings."""
        c = self.config
        n = len(batch["user"])
        h, _ = self._hidden(batch, torch.full((n, 1), BOS, dtype=torch.long))
        ratings = self.clip_rating(self.rating_head(h[:, 0]).squeeze(-1)).tolist()
        beams = max(1, int(num_beams))
        # beams are flattened into the batch: row b*beams + k
        rep = {k: v.repeat_interleave(beams, 0) for k, v in batch.items() if k not in ("text", "rating")}
        seq = torch.full((n * beams, 1), BOS, dtype=torch.long)
        score = torch.zeros(n, beams)
        score[:, 1:] = float("-inf")  # all beams start identical: keep one alive at step 0
        done = torch.zeros(n * beams, dtype=torch.bool)
        for step in range(c.max_words + 1):
            hs, n_pre = self._hidden(rep, seq)
            logp = self.word_log_probs(hs[:, -1:], hs, n_pre, rep)[:, 0].clone()
            if c.no_repeat_ngram > 0:
                block_repeats(logp, seq[:, 1:], c.no_repeat_ngram)
            logp[:, PAD] = float("-inf")
            logp[:, UNK] = float("-inf")  # never emit <unk>
            if step < c.min_words:
                logp[:, EOS] = float("-inf")
            if step == c.max_words:  # length bound: must stop now
                keep = logp[:, EOS].clone()
                logp[:] = float("-inf")
                logp[:, EOS] = keep
            logp[done] = float("-inf")
            logp[done, PAD] = 0.0  # finished beams only extend with padding, score unchanged
            if beams == 1 and c.top_p > 0:
                tok1 = sample_top_p(logp, c.top_p, c.temperature)
                cand = (score.reshape(-1, 1) + logp).reshape(n, -1)
                idx = tok1[:, None]
                top = cand.gather(1, idx)
            else:
                cand = (score.reshape(-1, 1) + logp).reshape(n, -1)
                top, idx = cand.topk(beams, dim=1)
            src = (idx // self.n_words) + torch.arange(n)[:, None] * beams
            tok = idx % self.n_words
            seq = torch.cat([seq[src.reshape(-1)], tok.reshape(-1, 1)], dim=1)
            done = done[src.reshape(-1)] | (tok.reshape(-1) == EOS)
            score = top
            if done.all():
                break
        lengths = ((seq != PAD) & (seq != BOS)).sum(1).float().reshape(n, beams)
        best = (score / lengths.clamp(min=1) ** c.length_penalty).argmax(1) if beams > 1 else torch.zeros(n, dtype=torch.long)
        out = seq.reshape(n, beams, -1)[torch.arange(n), best]
        return [self.tokenizer.decode(s) for s in out.tolist()], ratings


def block_repeats(logp: torch.Tensor, seq: torch.Tensor, n: int) -> None:
    """In place: forbid each row's next word where it would repeat an n-gram already in ``seq``."""
    if seq.shape[1] < n:
        return
    rows = seq.tolist()
    for b, toks in enumerate(rows):
        toks = [t for t in toks if t != PAD]
        if len(toks) < n:
            continue
        tail = tuple(toks[len(toks) - n + 1:])
        for j in range(len(toks) - n + 1):
            if tuple(toks[j:j + n - 1]) == tail:
                logp[b, toks[j + n - 1]] = float("-inf")


def sample_top_p(logp: torch.Tensor, top_p: float, temperature: float = 1.0) -> torch.Tensor:
    """One token id per row, sampled from the smallest set of tokens holding ``top_p`` of the mass."""
    probs = torch.softmax(logp / max(temperature, 1e-6), dim=-1)
    sp, si = probs.sort(dim=-1, descending=True)
    keep = (sp.cumsum(-1) - sp) < top_p  # always keeps the most likely token
    sp = sp * keep
    pick = torch.multinomial(sp / sp.sum(-1, keepdim=True).clamp(min=1e-12), 1)
    return si.gather(1, pick).squeeze(1)
