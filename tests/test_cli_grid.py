"""`textrec bench baselines --grid`: parsing and a clear error."""

import pytest

from textrec.options import parse_grids


def test_parse_grids():
    g = parse_grids(["EASE.lam=100,250.5", "ItemKNN.k=50,200", "ItemKNN.shrink=0,50"])
    assert g == {"EASE": {"lam": [100, 250.5]}, "ItemKNN": {"k": [50, 200], "shrink": [0, 50]}}
    assert parse_grids(None) == {}


@pytest.mark.parametrize("spec", ["EASE=1,2", "EASE.lam", "EASE.lam=a,b"])
def test_bad_grid(spec):
    with pytest.raises(ValueError, match="--grid"):
        parse_grids([spec])
