"""One loader per source format; each returns a :class:`~textrec.data.dataset.RecDataset`.

Every loader takes ``on_error="raise"|"skip"`` (bad rows raise a ``DataError`` naming the file,
line and field, or are skipped and counted in ``dataset.skipped``); the loaders with real
timestamps also take ``duplicates="keep"|"drop"|"error"`` for exact duplicate events.
"""

from textrec.data.loaders.amazon import load_amazon_reviews
from textrec.data.loaders.atomic import load_atomic
from textrec.data.loaders.movielens import load_movielens_100k
from textrec.data.loaders.p5 import load_p5_sequential
from textrec.data.loaders.rechorus import load_rechorus
from textrec.data.loaders.tabular import load_table

__all__ = ["load_amazon_reviews", "load_atomic", "load_movielens_100k", "load_p5_sequential", "load_rechorus",
           "load_table"]
