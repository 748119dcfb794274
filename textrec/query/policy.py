"""The query-writing policy: a causal LM (default SmolLM2-135M-Instruct, offline; see
:mod:`textrec.llm`) + optional LoRA, wrapped as a :class:`QueryWriter`.
"""

from __future__ import annotations

import os
from pathlib import Path

from textrec.llm import (  # noqa: F401  (re-exported: the query engine's public names)
    DEFAULT_LORA_TARGETS,
    DEFAULT_POLICY,
    completion_batch,
    llm_cache_dir,
    load_policy,
    lora_config,
    materialize_smollm2,
    prepare_tokenizer,
    resolve_policy,
    smollm2_gguf_path,
)

WRITER_FILE = "querywriter.json"


class QueryWriter:
    """A policy plus its prompt template: writes queries for tasks; ``save_pretrained`` round trip.

    Saved layout: ``querywriter.json`` (base model, template, generation settings) and either
    ``adapter/`` (a peft LoRA adapter, safetensors) on top of the base model, or ``model/``
    (full weights, safetensors, with the tokenizer).
    """

    def __init__(self, model, tokenizer, template_id: str = "query-plain", template_family: str = "query/recr1",
                 max_history: int = 8, max_new_tokens: int = 24, base_model: str = DEFAULT_POLICY,
                 dataset_name: str = "", max_prompt_tokens: int | None = None, max_words: int | None = None,
                 mode: str = "write"):
        from textrec.query.choice import check_mode
        from textrec.query.heuristics import DEFAULT_MAX_WORDS
        from textrec.query.tasks import load_template

        prepare_tokenizer(tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.template_id, self.template_family = template_id, template_family
        self.template = load_template(template_id, template_family)
        self.max_history, self.max_new_tokens = int(max_history), int(max_new_tokens)
        self.base_model = str(base_model)
        self.dataset_name = dataset_name
        self.max_prompt_tokens = None if max_prompt_tokens is None else int(max_prompt_tokens)
        # the query budget in words the writer was trained under; write() cuts to it (or to a caller's)
        self.max_words = int(max_words or DEFAULT_MAX_WORDS)
        # write: the completion is the query; choose: it names the heuristic query (textrec.query.choice)
        self.mode = check_mode(mode)
        #: prompt -> greedy completion, when a caller sets a dict: the benchmark asks for the same
        #: users' queries at several budgets, and greedy decoding writes the same completion each time
        self.greedy_cache: dict[str, str] | None = None

    @classmethod
    def from_base(cls, model_name: str | None = None, **kw) -> QueryWriter:
        """An untrained writer on a base policy (default SmolLM2-135M-Instruct)."""
        model, tok = load_policy(model_name)
        return cls(model, tok, base_model=model_name or DEFAULT_POLICY, **kw)

    def prompts(self, tasks) -> list[str]:
        """Rendered prompt strings for tasks (at most ``max_prompt_tokens`` tokens each)."""
        from textrec.query.tasks import prompt_text

        return [prompt_text(t, self.template, self.tokenizer, self.dataset_name, self.max_prompt_tokens) for t in tasks]

    def generate(self, tasks, batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0,
                 max_new_tokens: int | None = None, seed: int = 0, progress: bool = True) -> list[str]:
        """One completion per task (greedy by default), batched with left padding; greedy ones come
        from :attr:`greedy_cache` when it is set (and fill it)."""
        prompts = self.prompts(tasks)
        n_new = int(max_new_tokens or self.max_new_tokens)
        cache = self.greedy_cache if not do_sample and n_new == self.max_new_tokens else None
        if cache is None:
            return self._generate(prompts, batch_size, do_sample, temperature, n_new, seed, progress)
        todo = list(dict.fromkeys(p for p in prompts if p not in cache))
        if todo:
            cache.update(zip(todo, self._generate(todo, batch_size, False, temperature, n_new, seed, progress)))
        return [cache[p] for p in prompts]

    def _generate(self, prompts: list[str], batch_size: int, do_sample: bool, temperature: float, n_new: int,
                  seed: int, progress: bool) -> list[str]:
        import torch

        from textrec.options import progress_bar as tqdm

        self.model.eval()
        if do_sample:
            torch.manual_seed(seed)  # sampled queries are reproducible for a given seed
        # Longest prompts first so each batch pads little; results go back to task order.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        texts: dict[int, str] = {}
        bar = tqdm(total=len(prompts), desc="writing queries", unit="query", disable=not progress, leave=False)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                 add_special_tokens=False)
            with torch.no_grad():
                seqs = self.model.generate(**enc, max_new_tokens=n_new, do_sample=do_sample,
                                           temperature=temperature if do_sample else None,
                                           top_p=None, top_k=None,
                                           pad_token_id=self.tokenizer.pad_token_id)
            new = seqs[:, enc["input_ids"].shape[1]:]
            for i, row in zip(idx, new):
                texts[i] = self.tokenizer.decode(row, skip_special_tokens=True)
            bar.update(len(idx))
        bar.close()
        return [texts[i] for i in range(len(prompts))]

    def write(self, tasks, max_words: int | None = None, **generate_kw) -> list[str]:
        """The query per task, at most ``max_words`` words (default: the writer's budget), the same cut
        the reward makes: the completion parsed (:func:`textrec.query.parsing.parse_query`), or in
        ``choose`` mode the heuristic query it names, built from the task's context."""
        return [q for q, _ in self.write_with_completions(tasks, max_words, **generate_kw)]

    def write_with_completions(self, tasks, max_words: int | None = None, **generate_kw) -> list[tuple[str, str]]:
        """(query, raw completion) per task; see :meth:`write`."""
        from textrec.query.heuristics import budget_words
        from textrec.query.parsing import parse_query

        n = int(max_words or self.max_words)
        if n < 1:
            raise ValueError(f"max_words must be >= 1, got {n}")
        tasks = list(tasks)
        comps = self.generate(tasks, **generate_kw)
        if self.mode == "choose":
            from textrec.query.choice import choice_query

            return [(choice_query(c, t.context, n), c) for t, c in zip(tasks, comps)]
        return [(budget_words(parse_query(c).query, n), c) for c in comps]

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write the adapter (or full model) as safetensors plus ``querywriter.json``."""
        import json

        from textrec.io import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        is_peft = hasattr(self.model, "peft_config")
        if is_peft:
            self.model.save_pretrained(folder / "adapter", safe_serialization=True)
        else:
            self.model.save_pretrained(folder / "model", safe_serialization=True)
            self.tokenizer.save_pretrained(folder / "model")
        atomic_write_text(folder / WRITER_FILE, json.dumps({
            "base_model": self.base_model, "weights": "adapter" if is_peft else "model",
            "template_family": self.template_family, "template_id": self.template_id,
            "max_history": self.max_history, "max_new_tokens": self.max_new_tokens,
            "dataset": self.dataset_name, "max_prompt_tokens": self.max_prompt_tokens,
            "max_words": self.max_words, "mode": self.mode}, indent=1))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, merge: bool = True) -> QueryWriter:
        """Load what :meth:`save_pretrained` wrote (LoRA merged into the base for fast inference)."""
        import json

        folder = Path(folder)
        path = folder / WRITER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a saved query writer")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
            weights = cfg["weights"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{path}: unreadable query-writer config ({e})") from None
        if weights == "adapter":
            from peft import PeftModel

            base, tok = load_policy(cfg["base_model"])
            model = PeftModel.from_pretrained(base, str(folder / "adapter"))
            if merge:
                model = model.merge_and_unload()
        else:
            model, tok = load_policy(str(folder / "model"))
        return cls(model, tok, template_id=cfg.get("template_id", "query-plain"),
                   template_family=cfg.get("template_family", "query/recr1"),
                   max_history=cfg.get("max_history", 8), max_new_tokens=cfg.get("max_new_tokens", 24),
                   base_model=cfg["base_model"], dataset_name=cfg.get("dataset", ""),
                   max_prompt_tokens=cfg.get("max_prompt_tokens"), max_words=cfg.get("max_words"),
                   mode=cfg.get("mode", "write"))
