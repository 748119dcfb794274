"""ERRA generators: explanations conditioned on user, item, selected aspects and retrieved sentences.

Default, :class:`ERRADecoder` — the architecture of ERRA itself (Cheng et al., 2023), which extends
PETER: one transformer whose prefix holds the user, the item, the selected aspects (mean of their
word embeddings), each retrieved sentence as its MiniLM vector (projected), and the salient words of
the retrieved sentences as tokens (so the decoder can copy them); then the explanation words. Same
heads as PETER (rating, context, text), trained jointly. Chosen over the T5 because (1) it is how
ERRA conditions on retrieval, (2) it shares everything with the PETER-style baseline, so each
ablation changes only the conditioning, and (3) measured on the 2-core CPU it trains ~5x faster than
a T5 that reads three whole sentences (0.54 vs 2.7 s per batch of 64 at d_model 128).

Option (variant ``erra_copy``): a pointer head (See et al., 2017) over the words of the top
retrieved sentence, placed last in the prefix; each next word mixes the vocabulary distribution
with copy attention over those words, so the decoder can keep what the retrieved sentence says.

Option, :class:`ERRAGenerator` (``kind: erra_t5``) — a T5 built from a config (no pretrained weights
exist offline), whose encoder reads the aspects and the retrieved sentences as words::

    <u_U> <i_I> <asp> aspect1 <sep> aspect2 <ctx> sentence1 <sep> sentence2 <sep> sentence3 </s>

with a rating head on the encoder states of the user and item tokens; ``generate`` gives greedy and
beam search with length bounds. Loss = text NLL + ``rating_weight`` x MSE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from textrec.explain.base import ExplainModel
from textrec.explain.peter import T_ASPECT, T_KEYWORD, T_SENTENCE, PeterConfig, PeterModel
from textrec.explain.sentences import content_words, words
from textrec.explain.tokenizer import ASP, CTX, EOS, PAD, SEP, UNK, WordTokenizer


@dataclass
class ERRAConfig(PeterConfig):
    """ERRA decoder: PETER's settings plus what the prefix holds (``erra`` section of the recipe)."""

    use_retrieval: bool = True
    use_aspects: bool = True
    n_aspects: int = 2
    aspect_words: int = 2  # words kept per aspect ("acoustic guitar")
    k_sentences: int = 3
    sentence_dim: int = 384  # MiniLM
    n_keywords: int = 12  # salient words of the retrieved sentences given as tokens
    # copy source: the words of the top ``copy_sentences`` retrieved sentences, in order, as prefix
    # tokens that a pointer head can copy from (0 words = no copy head, the plain ERRA decoder)
    copy_words: int = 0
    copy_sentences: int = 1


class ERRADecoder(PeterModel):
    """PETER-style transformer with aspect, retrieved-sentence and keyword prefix slots."""

    kind = "erra"
    config_class = ERRAConfig

    @classmethod
    def prefix_size(cls, config) -> int:
        """user + item + aspect slots + sentence slots + keyword slots."""
        n = 2
        if config.use_aspects:
            n += config.n_aspects
        if config.use_retrieval:
            n += config.k_sentences + config.n_keywords + config.copy_words
        return n

    def __init__(self, config: ERRAConfig, tokenizer: WordTokenizer, rating_mean: float = 4.0):
        super().__init__(config, tokenizer, rating_mean)
        self.sent_proj = nn.Linear(config.sentence_dim, config.d_model) if config.use_retrieval else None
        self._kw_cache: dict[tuple[str, ...], list[int]] = {}
        if self.copies:
            d = config.d_model
            self.copy_query = nn.Linear(d, d)
            self.copy_key = nn.Linear(d, d)
            self.copy_gate = nn.Linear(2 * d, 1)

    @property
    def copies(self) -> bool:
        """Whether this decoder has the pointer head over the retrieved sentences' words."""
        return bool(self.config.use_retrieval and self.config.copy_words > 0)

    def copy_source(self, sentences: Sequence[str]) -> list[int]:
        """Word ids of the copy source: the first ``copy_sentences`` sentences, in order, truncated."""
        c = self.config
        ids: list[int] = []
        for s in list(sentences)[: c.copy_sentences]:
            ids += self.word_ids(s)
        return ids[: c.copy_words]

    def keywords(self, sentences: Sequence[str]) -> list[int]:
        """Word ids of the content words of the retrieved sentences, in order, known words only."""
        key = tuple(sentences)
        hit = self._kw_cache.get(key)
        if hit is None:
            hit = self._kw_cache[key] = self._keywords(sentences)
        return list(hit)

    def _keywords(self, sentences: Sequence[str]) -> list[int]:
        out: list[int] = []
        for s in sentences:
            for w in words(s):
                if w in content_words([w]):
                    ids = self.word_ids(w)
                    if ids and ids[0] != UNK and ids[0] not in out:
                        out.append(ids[0])
        return out[: self.config.n_keywords]

    def collate_prefix(self, examples: Sequence) -> dict[str, torch.Tensor]:
        """Users, items, aspect word ids, sentence vectors (+ presence mask) and keyword ids."""
        c = self.config
        out = super().collate_prefix(examples)
        b = len(examples)
        if c.use_aspects:
            asp = torch.full((b, c.n_aspects, c.aspect_words), PAD, dtype=torch.long)
            for k, e in enumerate(examples):
                for j, a in enumerate(list(e.aspects)[: c.n_aspects]):
                    ids = self.word_ids(a, c.aspect_words)
                    asp[k, j, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            out["asp"] = asp
        if c.use_retrieval:
            sent = torch.zeros(b, c.k_sentences, c.sentence_dim)
            ok = torch.zeros(b, c.k_sentences, dtype=torch.bool)
            kw = torch.full((b, c.n_keywords), PAD, dtype=torch.long)
            for k, e in enumerate(examples):
                for j, r in enumerate(list(e.retrieved)[: c.k_sentences]):
                    if r.emb is not None:
                        sent[k, j] = torch.as_tensor(r.emb, dtype=torch.float32)
                        ok[k, j] = True
                ids = self.keywords([r.text for r in list(e.retrieved)[: c.k_sentences]])
                kw[k, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            out["sent"], out["sent_ok"], out["kw"] = sent, ok, kw
            if self.copies:
                src = torch.full((b, c.copy_words), PAD, dtype=torch.long)
                for k, e in enumerate(examples):
                    ids = self.copy_source([r.text for r in e.retrieved])
                    src[k, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                out["src"] = src
        return out

    def prefix(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """[user, item, aspects..., sentences..., keywords...] and their padding mask."""
        x, pad = super().prefix(batch)
        parts, pads = [x], [pad]
        if self.config.use_aspects:
            ids = batch["asp"]
            present = (ids != PAD).float()
            e = (self.word_emb(ids) * present[..., None]).sum(2) / present.sum(2, keepdim=True).clamp(min=1)
            parts.append(e + self.type_emb.weight[T_ASPECT])
            pads.append(present.sum(2) == 0)
        if self.config.use_retrieval:
            parts.append(self.sent_proj(batch["sent"]) + self.type_emb.weight[T_SENTENCE])
            pads.append(~batch["sent_ok"])
            parts.append(self.word_emb(batch["kw"]) + self.type_emb.weight[T_KEYWORD])
            pads.append(batch["kw"] == PAD)
            if self.copies:  # last in the prefix: positions n_pre - copy_words .. n_pre
                parts.append(self.word_emb(batch["src"]) + self.type_emb.weight[T_SENTENCE])
                pads.append(batch["src"] == PAD)
        return torch.cat(parts, dim=1), torch.cat(pads, dim=1)

    def word_log_probs(self, hw: torch.Tensor, h: torch.Tensor, n_pre: int,
                       batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pointer-generator mix (See et al., 2017): gate x vocabulary + (1 - gate) x copy attention.

        The copy attention of each word state is over the source-word states of the prefix; its
        mass is added onto those words' ids. Rows without a source use the vocabulary alone.
        """
        vocab = F.log_softmax(self.lm_head(hw), dim=-1)
        if not self.copies:
            return vocab
        src = batch["src"]
        hs = h[:, n_pre - src.shape[1]:n_pre]
        att = torch.einsum("btd,bsd->bts", self.copy_query(hw), self.copy_key(hs)) / hw.shape[-1] ** 0.5
        empty = (src == PAD) | (src == UNK)
        att = att.masked_fill(empty[:, None, :], float("-inf"))
        has = ~empty.all(1)  # (B,)
        att = torch.where(has[:, None, None], att, torch.zeros_like(att))
        p_copy = torch.softmax(att, dim=-1)
        ctx = torch.einsum("bts,bsd->btd", p_copy, hs)
        gate = torch.sigmoid(self.copy_gate(torch.cat([hw, ctx], dim=-1)))  # (B, T, 1): P(generate)
        gate = torch.where(has[:, None, None], gate, torch.ones_like(gate))
        copy = torch.zeros_like(vocab).scatter_add_(2, src[:, None, :].expand(-1, hw.shape[1], -1), p_copy)
        return torch.log((gate * vocab.exp() + (1 - gate) * copy).clamp(min=1e-12))


@dataclass
class GeneratorConfig:
    """T5 size, conditioning switches and decoding bounds (``generator`` section of the recipe)."""

    use_retrieval: bool = True
    use_aspects: bool = True
    d_model: int = 256
    d_ff: int = 1024
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.1
    max_sentence_words: int = 30  # each retrieved sentence is truncated to this many tokens
    max_target_words: int = 25
    min_words: int = 4  # decoding length bounds (tokens before </s>)
    max_words: int = 25
    num_beams: int = 1
    rating_weight: float = 0.1
    rating_min: float = 1.0
    rating_max: float = 5.0


class ERRAGenerator(ExplainModel):
    """T5ForConditionalGeneration built from a config + a rating head (see module docstring)."""

    kind = "erra_t5"
    config_class = GeneratorConfig

    def __init__(self, config: GeneratorConfig, tokenizer: WordTokenizer, rating_mean: float = 4.0):
        super().__init__(config, tokenizer, rating_mean)
        from transformers import T5Config, T5ForConditionalGeneration

        c = config
        t5c = T5Config(vocab_size=len(tokenizer), d_model=c.d_model, d_kv=c.d_model // c.num_heads, d_ff=c.d_ff,
                       num_layers=c.num_layers, num_decoder_layers=c.num_decoder_layers, num_heads=c.num_heads,
                       dropout_rate=c.dropout, feed_forward_proj="gated-gelu", pad_token_id=PAD,
                       eos_token_id=EOS, decoder_start_token_id=PAD, tie_word_embeddings=True)
        self.t5 = T5ForConditionalGeneration(t5c)
        self.rating_head = nn.Sequential(nn.Linear(2 * c.d_model, c.d_model), nn.ReLU(), nn.Linear(c.d_model, 1))
        nn.init.constant_(self.rating_head[-1].bias, self.rating_mean)

    # ---- inputs --------------------------------------------------------------------------
    def source_ids(self, user: int, item: int, aspects: Sequence[str], sentences: Sequence[str]) -> list[int]:
        """Encoder token ids for one (user, item) with its aspects and retrieved sentences."""
        tok, c = self.tokenizer, self.config
        ids = [tok.user_token(user), tok.item_token(item)]
        if c.use_aspects and aspects:
            ids.append(ASP)
            for j, a in enumerate(aspects):
                ids += ([SEP] if j else []) + tok.encode(a)
        if c.use_retrieval and sentences:
            ids.append(CTX)
            for j, s in enumerate(sentences):
                ids += ([SEP] if j else []) + tok.encode(s, c.max_sentence_words)
        return ids + [EOS]

    def collate(self, examples: Sequence) -> dict[str, torch.Tensor]:
        """Pad sources and targets; labels use -100 on padding."""
        srcs = [self.source_ids(e.user, e.item, e.aspects, [r.text for r in e.retrieved]) for e in examples]
        tgts = [self.tokenizer.encode(e.target, self.config.max_target_words) + [EOS] for e in examples]
        ls, lt = max(map(len, srcs)), max(map(len, tgts))
        inp = torch.full((len(srcs), ls), PAD, dtype=torch.long)
        lab = torch.full((len(tgts), lt), -100, dtype=torch.long)
        for k, (s, t) in enumerate(zip(srcs, tgts)):
            inp[k, :len(s)] = torch.tensor(s)
            lab[k, :len(t)] = torch.tensor(t)
        rating = torch.tensor([e.rating for e in examples], dtype=torch.float32)
        return {"input_ids": inp, "attention_mask": (inp != PAD).long(), "labels": lab, "rating": rating}

    # ---- training ------------------------------------------------------------------------
    def _rating(self, enc: torch.Tensor) -> torch.Tensor:
        return self.rating_head(torch.cat([enc[:, 0], enc[:, 1]], dim=-1)).squeeze(-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses: ``loss`` (total), ``text`` (NLL per token) and ``rating`` (MSE)."""
        out = self.t5(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        pred = self._rating(out.encoder_last_hidden_state)
        r = batch["rating"]
        ok = ~torch.isnan(r)
        rl = ((pred[ok] - r[ok]) ** 2).mean() if ok.any() else pred.sum() * 0.0
        return {"loss": out.loss + self.config.rating_weight * rl, "text": out.loss.detach(), "rating": rl.detach()}

    # ---- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def predict_batch(self, batch: dict[str, torch.Tensor], num_beams: int = 1) -> tuple[list[str], list[float]]:
        """Greedy (``num_beams=1``) or beam decoding within [min_words, max_words]; clipped ratings."""
        c = self.config
        enc = self.t5.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        ratings = self.clip_rating(self._rating(enc.last_hidden_state)).tolist()
        gen = self.t5.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               encoder_outputs=enc, num_beams=num_beams, do_sample=False,
                               min_new_tokens=c.min_words + 1, max_new_tokens=c.max_words + 1,
                               early_stopping=True if num_beams > 1 else False)
        return [self.tokenizer.decode(g) for g in gen.tolist()], ratings
