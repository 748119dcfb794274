"""ERRA engine: explanations grounded in retrieved review sentences and user aspects.

Modules: ``sentences`` (splitting, FAISS sentence index, leakage-safe retrieval), ``aspects``
(vocabulary, preferences, per-pair selection), ``split`` (8:1:1 review split), ``data``
(``ExplainData``: everything the models read), ``tokenizer`` (word level, ``tokenizers``),
``peter`` (PETER-style baseline), ``generator`` (ERRA decoder, T5 option), ``lm`` (pretrained
causal LM + LoRA option, PEPLER-style), ``trainer``,
``pipeline`` (train/evaluate/``Explainer``), ``faithfulness`` (citations, grounding, unsupported
aspects), ``bench`` (saved models vs copy-retrieved, decoding chosen on valid), ``cli`` (``textrec explain``).

Names are imported lazily so ``textrec --help`` does not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ExplainData": "textrec.explain.data", "DataConfig": "textrec.explain.data", "Example": "textrec.explain.data",
    "SentenceIndex": "textrec.explain.sentences", "split_sentences": "textrec.explain.sentences",
    "AspectVocab": "textrec.explain.aspects", "AspectConfig": "textrec.explain.aspects",
    "AspectPreferences": "textrec.explain.aspects", "extract_aspects": "textrec.explain.aspects",
    "split_reviews": "textrec.explain.split", "WordTokenizer": "textrec.explain.tokenizer",
    "PeterModel": "textrec.explain.peter", "PeterConfig": "textrec.explain.peter",
    "ERRADecoder": "textrec.explain.generator", "ERRAConfig": "textrec.explain.generator",
    "ERRAGenerator": "textrec.explain.generator", "GeneratorConfig": "textrec.explain.generator",
    "LMExplainer": "textrec.explain.lm", "LMExplainerConfig": "textrec.explain.lm",
    "ExplainModel": "textrec.explain.base", "TrainConfig": "textrec.explain.trainer",
    "train_model": "textrec.explain.trainer", "Explainer": "textrec.explain.pipeline",
    "build_data": "textrec.explain.pipeline", "train_variant": "textrec.explain.pipeline",
    "copy_baseline": "textrec.explain.pipeline", "evaluate_predictions": "textrec.explain.pipeline",
    "cite": "textrec.explain.faithfulness",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'textrec.explain' has no attribute {name!r}")
