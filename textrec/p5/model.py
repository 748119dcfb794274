"""The P5 model: a T5 encoder-decoder + whole-word (item-span) embeddings + tokenizer + item index.

T5 comes from a size preset (``tiny`` .. ``t5-small``) built from a config with the tokenizer
trained on the data, or from any local / hub checkpoint (``checkpoint=...``; its tokenizer is
extended with the item tokens and the embeddings resized). Whole-word embeddings as in P5: an
extra embedding table is added to the encoder's input embeddings; every token of the ``m``-th
item id in a prompt gets row ``m`` (1-based, wrapping at ``max_item_spans``), other tokens row
0, so the pieces of one item id are tied together and told apart from the next item's pieces.

Optional item embeddings (``item_embeddings=True``, a textrec extension): every token of an item
id in the *source* also gets that item's own embedding row (zero-initialised). Id pieces such as
``<c0_3>`` are shared by hundreds of items, so without it the encoder must learn which item a
3-token conjunction names before it can learn item-to-item transitions; with it the identity is
there from the first step. Items that never occur in a training source (new items) keep a zero
row, so they are represented by their id tokens alone (semantic codes carry their meaning).

LoRA (peft) is an option for checkpoints: the adapters train, and ``merge_lora`` folds them
back so the saved model is a plain T5.

Files: a P5 artifact is the one textrec format (``config.json``, ``model.safetensors`` with the
whole-word and item tables, ``catalog.json``, manifest) plus ``t5/`` (HF config + safetensors),
``tokenizer/`` and ``item_index.json``. Nothing is unpickled on load and no remote code runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textrec.indexing.base import ItemIndex
from textrec.indexing.trie import ItemTrie

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 64, "d_ff": 256, "num_layers": 2, "num_heads": 2},
    "mini": {"d_model": 128, "d_ff": 512, "num_layers": 2, "num_heads": 4},
    "small": {"d_model": 256, "d_ff": 1024, "num_layers": 4, "num_heads": 4},
    "t5-small": {"d_model": 512, "d_ff": 2048, "num_layers": 6, "num_heads": 8},
}


@dataclass
class P5Config:
    """Model settings. Explicit sizes override the preset's; ``checkpoint`` overrides both."""

    preset: str = "mini"
    d_model: int | None = None
    d_ff: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    dropout: float = 0.1
    feed_forward_proj: str = "gated-gelu"
    vocab_size: int = 4000  # BPE vocabulary learned on the data (item tokens come on top)
    whole_word: bool = True
    max_item_spans: int = 64
    item_embeddings: bool = False  # add a per-item input embedding on each history id's tokens (see module doc)
    item_init: str = "none"  # item-token start: none | svd | text | svd+text (textrec.p5.item_init, training data only)
    rating_value_tokens: bool = False  # add serializer.RATING_VALUE_TOKENS (<rv_46> = 4.6) with numeric rows
    item_init_max_norm: float | None = None  # cap on an initialised row's norm, as a multiple of the median row norm
    new_item_refit: bool = False  # after training: new items' rows from a text map refitted on trained warm rows
    new_item_refit_ridge: float = 1.0
    new_item_refit_methods: list[str] = field(default_factory=lambda: ["ridge"])  # ridge | knn; several: chosen on valid
    new_item_refit_k: int = 10  # text neighbours of the knn method
    new_item_refit_scales: list[float] = field(default_factory=lambda: [1.0])  # deviation scales; chosen on valid
    new_item_refit_mean_weights: list[float] = field(default_factory=lambda: [1.0])  # mean-row weights; chosen on valid
    max_source_len: int = 160
    max_target_len: int = 64
    checkpoint: str | None = None
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=lambda: ["q", "v"])

    def sizes(self) -> dict[str, int]:
        """The effective T5 sizes (preset + overrides)."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown P5 preset '{self.preset}'; choose from {sorted(PRESETS)}")
        out = dict(PRESETS[self.preset])
        for k in out:
            v = getattr(self, k)
            if v is not None:
                out[k] = int(v)
        return out


def _zero_item_embedding(n_items: int, dim: int) -> nn.Embedding:
    """Per-item input rows, zero-initialised; row ``n_items`` means "not an item" (see module doc)."""
    emb = nn.Embedding(n_items + 1, dim)
    nn.init.zeros_(emb.weight)
    return emb


class P5Model(nn.Module):
    """T5 + whole-word embeddings, with its tokenizer and item index (see module doc)."""

    def __init__(self, config: P5Config, tokenizer, index: ItemIndex, t5=None,
                 item_ids: list[str] | None = None):
        super().__init__()
        from transformers import T5Config, T5ForConditionalGeneration

        from textrec.p5.tokenizer import add_item_tokens

        self.config = config
        self.tokenizer = tokenizer
        self.index = index
        self.item_ids = item_ids
        add_item_tokens(tokenizer, index.vocab())
        if config.rating_value_tokens:
            from textrec.p5.serializer import RATING_VALUE_TOKENS
            from textrec.p5.tokenizer import add_plain_tokens

            add_plain_tokens(tokenizer, RATING_VALUE_TOKENS)
        if t5 is None:
            s = config.sizes()
            tcfg = T5Config(vocab_size=len(tokenizer), d_model=s["d_model"], d_ff=s["d_ff"],
                            d_kv=s["d_model"] // s["num_heads"], num_layers=s["num_layers"],
                            num_decoder_layers=s["num_layers"], num_heads=s["num_heads"],
                            dropout_rate=config.dropout, feed_forward_proj=config.feed_forward_proj,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                            decoder_start_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
            t5 = T5ForConditionalGeneration(tcfg)
        elif t5.get_input_embeddings().num_embeddings < len(tokenizer):
            t5.resize_token_embeddings(len(tokenizer))
        self.t5 = t5
        d = t5.config.d_model
        self.whole_word = nn.Embedding(config.max_item_spans + 1, d, padding_idx=0)
        nn.init.normal_(self.whole_word.weight, std=0.02)
        with torch.no_grad():
            self.whole_word.weight[0].zero_()
        self.item_embedding = _zero_item_embedding(index.n_items, d) if config.item_embeddings else None
        self._span_lookup: dict[tuple[int, ...], int] | None = None
        is_item, is_start = self._token_flags()
        self.register_buffer("is_item_token", is_item, persistent=False)
        self.register_buffer("is_start_token", is_start, persistent=False)
        self._trie: ItemTrie | None = None

    def _token_flags(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per vocabulary id: is it an item token; does it start an item id (see ``ItemIndex.start_tokens``)."""
        from textrec.p5.tokenizer import item_token_ids

        vocab_n = max(len(self.tokenizer), self.t5.get_input_embeddings().num_embeddings)
        is_item = torch.zeros(vocab_n, dtype=torch.bool)
        is_item[item_token_ids(self.tokenizer, self.index.vocab())] = True
        is_start = torch.zeros(vocab_n, dtype=torch.bool)
        starts = self.index.start_tokens()
        if starts:
            is_start[item_token_ids(self.tokenizer, sorted(starts))] = True
        return is_item, is_start

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def build(cls, config: P5Config, index: ItemIndex, corpus: list[str] | None = None,
              item_ids: list[str] | None = None, seed: int | None = 0) -> P5Model:
        """A fresh model: train a tokenizer on ``corpus`` (or load the checkpoint's) and build T5.

        ``seed`` fixes the random initialisation (None leaves torch's global generator alone).
        """
        if seed is not None:
            torch.manual_seed(seed)
        ckpt = Path(config.checkpoint) if config.checkpoint else None
        if ckpt is not None and ((ckpt / "p5_config.json").is_file() or (ckpt / "item_index.json").is_file()):
            # A saved P5 model (e.g. another domain): keep its weights and tokenizer, swap the index.
            model = cls.from_pretrained(config.checkpoint)
            model.config = config
            model.replace_index(index, item_ids=item_ids)
            if config.item_embeddings and model.item_embedding is None:
                model.item_embedding = _zero_item_embedding(index.n_items, model.t5.config.d_model)
            elif not config.item_embeddings:
                model.item_embedding = None
        elif config.checkpoint:
            from transformers import AutoTokenizer, T5ForConditionalGeneration

            tok = AutoTokenizer.from_pretrained(config.checkpoint)
            t5 = T5ForConditionalGeneration.from_pretrained(config.checkpoint)
            model = cls(config, tok, index, t5=t5, item_ids=item_ids)
        else:
            from textrec.p5.tokenizer import train_tokenizer

            if not corpus:
                raise ValueError("a P5 model from scratch needs a text corpus to train its tokenizer")
            tok = train_tokenizer(corpus, index.vocab(), vocab_size=config.vocab_size)
            model = cls(config, tok, index, item_ids=item_ids)
        if config.rating_value_tokens and not (ckpt is not None and (ckpt / "item_index.json").is_file()):
            model.init_rating_value_tokens(seed)
        if config.lora:
            model.add_lora()
        return model

    @torch.no_grad()
    def init_rating_value_tokens(self, seed: int | None = 0) -> None:
        """Start the rating value tokens on a line: row(v) = r * (a + z(v) * b) / sqrt(2), z in [-1, 1].

        ``a`` and ``b`` are random orthogonal unit directions and ``r`` the table's median row norm,
        so a star value is a linear feature of its token from the first step and neighbouring
        values start close; a random start would leave the order of 41 symbols to be learned
        from a few thousand ratings.
        """
        from textrec.p5.serializer import RATING_VALUE_TOKENS, rating_value_of_token
        from textrec.p5.tokenizer import item_token_ids

        emb = self.t5.get_input_embeddings().weight
        gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        q, _ = torch.linalg.qr(torch.randn(emb.shape[1], 2, generator=gen))
        r = emb.norm(dim=1).median()
        ids = item_token_ids(self.tokenizer, RATING_VALUE_TOKENS)
        z = torch.tensor([(rating_value_of_token(t) - 3.0) / 2.0 for t in RATING_VALUE_TOKENS])
        rows = r * (q[:, 0][None, :] + z[:, None] * q[:, 1][None, :]) / 2 ** 0.5
        emb[torch.as_tensor(ids)] = rows.to(emb.dtype).to(emb.device)

    def replace_index(self, index: ItemIndex, item_ids: list[str] | None = None) -> int:
        """Switch to another item index (new domain / new items): add its tokens, resize embeddings.

        Tokens the model already knows (e.g. semantic code tokens shared across domains) keep
        their trained embeddings; new ones start from the T5 initialisation. Returns how many
        tokens were added.
        """
        from textrec.p5.tokenizer import add_item_tokens

        added = add_item_tokens(self.tokenizer, index.vocab())
        if self.t5.get_input_embeddings().num_embeddings < len(self.tokenizer):
            self.t5.resize_token_embeddings(len(self.tokenizer))
        self.index = index
        self.item_ids = item_ids
        is_item, is_start = self._token_flags()
        self.is_item_token = is_item.to(self.device)
        self.is_start_token = is_start.to(self.device)
        self._trie = None
        self._span_lookup = None
        if self.item_embedding is not None and self.item_embedding.num_embeddings != index.n_items + 1:
            # item rows are tied to item indexes, which another index renumbers: start them at zero
            self.item_embedding = _zero_item_embedding(index.n_items, self.item_embedding.embedding_dim).to(self.device)
        return added

    def add_lora(self) -> None:
        """Wrap T5 with LoRA adapters (peft); embeddings and whole-word table stay trainable."""
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(r=self.config.lora_r, lora_alpha=self.config.lora_alpha,
                         target_modules=list(self.config.lora_targets), lora_dropout=0.05,
                         task_type="SEQ_2_SEQ_LM")
        self.t5 = get_peft_model(self.t5, cfg)
        # New item tokens have no pretrained rows: their embeddings must learn too.
        self.t5.get_input_embeddings().weight.requires_grad_(True)

    def merge_lora(self) -> None:
        """Fold LoRA adapters into the base weights (no-op without LoRA)."""
        if hasattr(self.t5, "merge_and_unload"):
            self.t5 = self.t5.merge_and_unload()

    # ---- forward ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.whole_word.weight.device

    @property
    def trie(self) -> ItemTrie:
        """The prefix trie of every item's token ids (built once)."""
        if self._trie is None:
            seqs = [self.tokenizer.convert_tokens_to_ids(t) for t in self.index.tokens]
            self._trie = ItemTrie(seqs, eos_id=self.tokenizer.eos_token_id)
        return self._trie

    def whole_word_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Per token: 1-based number of the item-id span it belongs to, 0 outside item ids.

        A span starts after a non-item token or at a token that starts an id, so ids written
        back to back without a separator still get one number each.
        """
        is_item = self.is_item_token[input_ids]
        prev = torch.zeros_like(is_item)
        prev[:, 1:] = is_item[:, :-1]
        span = torch.cumsum(is_item & (~prev | self.is_start_token[input_ids]), dim=1)
        span = (span - 1) % self.config.max_item_spans + 1
        return torch.where(is_item, span, torch.zeros_like(span))

    def span_items(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Per token: the item whose whole id the token's span spells, ``n_items`` elsewhere.

        A span cut by left truncation, or one that spells no item, maps to ``n_items``.
        """
        if self._span_lookup is None:
            self._span_lookup = {tuple(self.tokenizer.convert_tokens_to_ids(t)): i
                                 for i, t in enumerate(self.index.tokens)}
        lookup, none = self._span_lookup, self.index.n_items
        is_item = self.is_item_token[input_ids].tolist()
        is_start = self.is_start_token[input_ids].tolist()
        ids = input_ids.tolist()
        out = [[none] * len(row) for row in ids]
        for r, (row, flags) in enumerate(zip(ids, is_item)):
            j = 0
            while j < len(row):
                if not flags[j]:
                    j += 1
                    continue
                e = j + 1
                while e < len(row) and flags[e] and not is_start[r][e]:
                    e += 1
                it = lookup.get(tuple(row[j:e]), none)
                out[r][j:e] = [it] * (e - j)
                j = e
        return torch.tensor(out, dtype=torch.long, device=input_ids.device)

    def input_embeds(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings plus whole-word (and, if enabled, per-item) embeddings."""
        emb = self.t5.get_input_embeddings()(input_ids)
        if self.config.whole_word:
            emb = emb + self.whole_word(self.whole_word_ids(input_ids))
        if self.item_embedding is not None:
            emb = emb + self.item_embedding(self.span_items(input_ids))
        return emb

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Encoder outputs for a batch (used by training and every generation mode)."""
        return self.t5.get_encoder()(inputs_embeds=self.input_embeds(input_ids), attention_mask=attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor):
        """Seq2seq loss (labels padded with -100)."""
        return self.t5(encoder_outputs=self.encode(input_ids, attention_mask), attention_mask=attention_mask,
                       labels=labels)

    def tokenize_sources(self, sources: list[str]) -> dict[str, torch.Tensor]:
        """Tokenize prompts (truncated on the *left* so the most recent history is kept)."""
        tok = self.tokenizer
        side = tok.truncation_side
        tok.truncation_side = "left"
        try:
            enc = tok(sources, max_length=self.config.max_source_len, truncation=True, padding=True,
                      return_tensors="pt")
        finally:
            tok.truncation_side = side
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def tokenize_targets(self, targets: list[str]) -> torch.Tensor:
        """Target ids padded with -100 (ignored by the loss)."""
        enc = self.tokenizer(targets, max_length=self.config.max_target_len, truncation=True, padding=True,
                             return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return labels.to(self.device)

    def n_parameters(self) -> int:
        """Trainable + frozen parameter count."""
        return sum(p.numel() for p in self.parameters())

    # ---- persistence -----------------------------------------------------------------------
    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The whole-word (and item) tables: the artifact's ``model.safetensors`` (T5 has its own)."""
        tensors = {"whole_word.weight": self.whole_word.weight.detach().cpu().contiguous()}
        if self.item_embedding is not None:
            tensors["item_embedding.weight"] = self.item_embedding.weight.detach().cpu().contiguous()
        return tensors

    def write_parts(self, folder: Path) -> None:
        """Write ``t5/``, ``tokenizer/`` and ``item_index.json`` into an artifact folder."""
        self.merge_lora()
        folder = Path(folder)
        self.t5.save_pretrained(folder / "t5", safe_serialization=True)
        self.tokenizer.save_pretrained(folder / "tokenizer")
        self.index.save(folder / "item_index.json")

    def config_dict(self) -> dict[str, Any]:
        """The model config as saved (adapters are merged before saving)."""
        return {**asdict(self.config), "lora": False}

    @classmethod
    def read_parts(cls, folder: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor],
                   item_ids: list[str] | None = None) -> P5Model:
        """Rebuild a model from an artifact folder's parts (see :meth:`write_parts`)."""
        from transformers import PreTrainedTokenizerFast, T5ForConditionalGeneration

        from textrec.recipes import config_from_dict

        folder = Path(folder)
        cfg = config_from_dict(P5Config, config, "P5 model")
        tok = PreTrainedTokenizerFast.from_pretrained(folder / "tokenizer")
        t5 = T5ForConditionalGeneration.from_pretrained(folder / "t5")
        index = ItemIndex.load(folder / "item_index.json")
        model = cls(cfg, tok, index, t5=t5, item_ids=item_ids)
        item_weight = tensors.get("item_embedding.weight")
        if (item_weight is None) != (model.item_embedding is None):
            raise ValueError(f"{folder}: item_embeddings={cfg.item_embeddings} but model.safetensors "
                             f"{'lacks' if item_weight is None else 'has'} 'item_embedding.weight'")
        model.whole_word.load_state_dict({"weight": tensors["whole_word.weight"]})
        if item_weight is not None:
            model.item_embedding.load_state_dict({"weight": item_weight})
        model.eval()
        return model

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Save as a P5 artifact with default recommender settings (``textrec.load`` gives a P5Recommender)."""
        from textrec.artifact import save_model
        from textrec.catalog import Catalog

        self.merge_lora()
        catalog = Catalog(self.item_ids) if self.item_ids is not None else None
        return save_model(path, "P5", {"indexing": self.index.scheme, "model_config": self.config_dict()},
                          self.extra_tensors(), catalog=catalog, extra=self.write_parts)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> P5Model:
        """Load the model of a P5 artifact (current format, or a textrec 0.1 ``p5_config.json`` folder)."""
        from textrec.artifact import ArtifactError, read_config, read_tensors
        from textrec.catalog import Catalog

        path = Path(path)
        if (path / "p5_config.json").is_file():
            return cls._from_legacy(path)
        body = read_config(path)
        if body["model_type"] != "P5":
            raise ArtifactError(f"{path}: a {body['model_type']} artifact, not P5")
        ids = Catalog.load(path).ids if (path / "catalog.json").is_file() else None
        return cls.read_parts(path, body["config"]["model_config"], read_tensors(path), item_ids=ids)

    @classmethod
    def _from_legacy(cls, path: Path) -> P5Model:
        """A folder written by textrec 0.1 (``p5_config.json``, ``whole_word.safetensors``)."""
        from safetensors.torch import load_file

        cfg: dict[str, Any] = json.loads((path / "p5_config.json").read_text())
        if cfg.pop("model_type", None) != "P5Model":
            raise ValueError(f"{path}/p5_config.json is not a P5Model config")
        ids = json.loads((path / "item_ids.json").read_text()) if (path / "item_ids.json").is_file() else None
        extra = load_file(str(path / "whole_word.safetensors"))
        tensors = {"whole_word.weight": extra["weight"]}
        if "item_weight" in extra:
            tensors["item_embedding.weight"] = extra["item_weight"]
        return cls.read_parts(path, cfg, tensors, item_ids=ids)
