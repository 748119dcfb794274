"""Item text side of the engines: sentence embeddings (cached), their per-domain whitening and their
product-quantized codes.

Importing this package loads neither the sentence encoder nor FAISS; they load on first use.
"""

from textrec.text.encoder import (
    CacheStats,
    ItemTexts,
    TextEncoder,
    bundled_model_path,
    default_cache_dir,
    item_texts,
)
from textrec.text.quantize import (
    ProductQuantizer,
    SmallCatalogWarning,
    choose_n_centroids,
    code_stats,
    plot_code_usage,
    unpack_codes,
)
from textrec.text.whitening import apply_whitening, fit_whitening, whiten_text

__all__ = [
    "CacheStats",
    "ItemTexts",
    "ProductQuantizer",
    "SmallCatalogWarning",
    "TextEncoder",
    "apply_whitening",
    "bundled_model_path",
    "choose_n_centroids",
    "code_stats",
    "default_cache_dir",
    "fit_whitening",
    "item_texts",
    "plot_code_usage",
    "unpack_codes",
    "whiten_text",
]
