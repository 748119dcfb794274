"""Shims that let RecBole 1.2.1 run on this stack (NumPy 2, torch >= 2.6, pandas 3, no ``ray``).

Only the RecBole side-by-side benchmark imports them (when it runs), never the rest of
``textrec``: they patch third-party modules. Call :func:`apply` *before* importing anything from ``recbole``; it is idempotent
and returns the list of shims it actually installed (recorded in the result JSON).

What breaks without them:

* ``np.float_`` / ``np.complex_`` / ``np.unicode_`` were removed in NumPy 2; RecBole's
  ``Config.compatibility_settings`` reads them on every ``Config(...)``.
* ``recbole.quick_start`` does ``from ray import tune`` at import time. ``ray`` is only used for
  hyper-parameter tuning, so when it is not installed a stub module is registered. (The
  side-by-side script does not import ``quick_start`` at all; the stub keeps it importable.)
* torch >= 2.6 defaults ``torch.load(weights_only=True)``; RecBole's checkpoints hold the
  config object, so reloading the best model (``trainer.evaluate(load_best_model=True)``)
  fails. The wrapper defaults ``weights_only=False`` only for paths this process saved with
  ``torch.save``; every other file keeps the safe default.
* RecBole's ``Trainer`` opens a TensorBoard ``SummaryWriter`` under ``./log_tensorboard``
  relative to the working directory; a no-op writer keeps the repo clean (optional shim).
* pandas 3 (copy-on-write) turns RecBole's ``df[field].fillna(..., inplace=True)`` into a
  no-op, so NaNs in user/item feature tables stay. Not shimmed: the ML-100K run loads only the
  interaction file (``load_col: inter``), which has no NaNs; the script checks that.
"""

from __future__ import annotations

import functools
import sys
import types

import numpy as np

_APPLIED: list[str] = []


def _numpy_aliases() -> list[str]:
    done = []
    for name, target in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_),
                         ("bool8", np.bool_)):
        try:
            getattr(np, name)
            continue  # still provided (NumPy 1.x) or already aliased
        except AttributeError:
            pass
        setattr(np, name, target)
        done.append(f"np.{name}")
    return done


def _ray_stub() -> list[str]:
    try:
        import ray  # noqa: F401
        return []
    except ImportError:
        pass
    ray = types.ModuleType("ray")
    tune = types.ModuleType("ray.tune")

    def _unavailable(*_a, **_k):
        raise ImportError("ray is not installed (stubbed by textrec/benchmarks/recbole_shims.py); "
                          "RecBole hyper-parameter tuning is unavailable")

    tune.run = _unavailable
    tune.report = _unavailable
    ray.tune = tune
    ray.init = _unavailable
    ray.__recbole_stub__ = True
    sys.modules["ray"] = ray
    sys.modules["ray.tune"] = tune
    return ["ray stub"]


def _torch_load_weights_only() -> list[str]:
    import os

    import torch

    if getattr(torch.load, "__recbole_shim__", False):
        return []
    original_load, original_save = torch.load, torch.save
    written: set[str] = set()  # real paths of the checkpoints this process saved

    def key(f) -> str | None:
        return os.path.realpath(os.fspath(f)) if isinstance(f, (str, os.PathLike)) else None

    @functools.wraps(original_save)
    def save(obj, f, *args, **kwargs):
        out = original_save(obj, f, *args, **kwargs)
        if (k := key(f)) is not None:
            written.add(k)
        return out

    @functools.wraps(original_load)
    def load(f, *args, **kwargs):
        # RecBole pickles its Config into its own checkpoints; anything else keeps torch's safe default
        if key(f) in written:
            kwargs.setdefault("weights_only", False)
        return original_load(f, *args, **kwargs)

    load.__recbole_shim__ = True
    torch.load, torch.save = load, save
    return ["torch.load weights_only=False for checkpoints this process saved"]


class _NullWriter:
    """Stands in for ``torch.utils.tensorboard.SummaryWriter``; drops everything."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def _no_tensorboard() -> list[str]:
    import recbole.trainer.trainer as trainer_mod

    if getattr(trainer_mod.get_tensorboard, "__recbole_shim__", False):
        return []

    def get_tensorboard(logger):
        return _NullWriter()

    get_tensorboard.__recbole_shim__ = True
    trainer_mod.get_tensorboard = get_tensorboard
    return ["no-op TensorBoard writer"]


def apply(tensorboard: bool = False) -> list[str]:
    """Install the shims (idempotent). Returns every shim installed so far in this process."""
    for step in (_numpy_aliases, _ray_stub, _torch_load_weights_only):
        _APPLIED.extend(step())
    if not tensorboard:
        _APPLIED.extend(_no_tensorboard())
    return list(_APPLIED)
