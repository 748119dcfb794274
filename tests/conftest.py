"""Shared test helpers: fixture paths and the real-data skip marker."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
# Real public data lives next to the checkout, never inside it (see ../shared/data/README.md).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"../shared/data is absent ({SHARED_DATA}): real-data checks skipped")
