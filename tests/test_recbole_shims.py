"""textrec/benchmarks/recbole_shims.py and the tie-order reasoning of the RecBole side-by-side benchmark.

The shims patch numpy/torch globally, so they are exercised in a subprocess (never in the
pytest process). Skips cleanly when RecBole is not installed.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("recbole")


def _recbole_deps_missing() -> list[str]:
    """RecBole's declared requirements that are not installed (the README installs it with
    --no-deps, for its bundled ML-100K files only)."""
    import importlib.metadata as md
    import re

    missing = []
    for req in md.requires("recbole") or []:
        if "extra ==" in req:
            continue
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        try:
            md.version(name)
        except md.PackageNotFoundError:
            missing.append(name)
    return missing


_MISSING = _recbole_deps_missing()

REPO = Path(__file__).resolve().parents[1]


def test_torch_load_shim_unpickles_only_checkpoints_this_process_saved(tmp_path):
    """RecBole reloads its own checkpoints (which pickle its Config); any other file keeps torch's
    weights_only=True default, so the shim never unpickles a file it did not write."""
    code = textwrap.dedent(f"""
        import sys, pickle, shutil
        sys.path.insert(0, {str(REPO)!r})
        import torch
        from textrec.benchmarks import recbole_shims
        recbole_shims._torch_load_weights_only()
        class Cfg:
            pass
        path = {str(tmp_path / "ckpt.pth")!r}
        torch.save({{"config": Cfg(), "state_dict": {{}}}}, path)
        # a bare torch.load on purpose, as RecBole calls it: the shim, not the caller, decides weights_only
        assert type(torch.load(path)["config"]).__name__ == "Cfg"
        shutil.copy(path, path + ".other")
        try:
            torch.load(path + ".other")
        except pickle.UnpicklingError:
            print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(bool(_MISSING), reason=f"recbole installed without its dependencies {_MISSING} "
                    "(pip install '.[bench]' for the side-by-side run)")
def test_shims_make_recbole_importable_and_checkpoints_loadable(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from textrec.benchmarks import recbole_shims
        applied = recbole_shims.apply()
        assert recbole_shims.apply() == applied  # idempotent
        import numpy as np, torch
        from recbole.config import Config
        Config.compatibility_settings(None)  # reads np.float_, np.complex_, np.unicode_
        import recbole.quick_start  # top-level `from ray import tune`
        import recbole.trainer.trainer as t
        assert type(t.get_tensorboard(None)).__name__ == "_NullWriter"
        path = {str(tmp_path / "ckpt.pth")!r}
        torch.save({{"config": object.__new__(Config), "state_dict": {{}}}}, path)
        assert "config" in torch.load(path, map_location="cpu")  # a checkpoint this process saved: unpickled
        import shutil, pickle
        other = path + ".copy"
        shutil.copy(path, other)  # same bytes, but not saved by this process: torch's safe default holds
        try:
            torch.load(other)
            raise SystemExit("a foreign checkpoint was unpickled")
        except pickle.UnpicklingError:
            pass
        print("OK", applied)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_float32_normalized_time_reorders_one_second_apart_events():
    # RecBole's rule: stable sort on min-max normalized float32 time, then file order.
    # Two events 1 s apart near the end of a long span collapse; file order then decides.
    from textrec.benchmarks.recbole import _simulate

    ts = np.array([0.0, 1e8 - 1, 1e8 - 2, 1e8])  # float32 step just below 1.0 is ~6 s here
    frame = pd.DataFrame({"user_id": ["u", "u", "u", "v"], "item_id": ["a", "b", "c", "d"]})
    frame["row"] = np.arange(len(frame))
    frame["user_code"] = pd.factorize(frame["user_id"])[0]
    exact_test, exact_valid, _ = _simulate(frame, ts)
    assert (exact_test["u"], exact_valid["u"]) == ("b", "c")  # by time: c (t-2) before b (t-1)
    norm32 = ((ts - ts.min()) / (ts.max() - ts.min())).astype(np.float32).astype(np.float64)
    assert norm32[1] == norm32[2]  # 1 s apart is below float32 resolution here
    f32_test, f32_valid, _ = _simulate(frame, norm32)
    assert (f32_test["u"], f32_valid["u"]) == ("c", "b")  # merged: file order decides, swapped
