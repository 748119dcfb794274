"""Every number a README states next to a result link is found in the result file it links to.

Works on any Markdown page whose claims link to result files: README.md (its summary table) and
eval/README.md (the generated report). A line holding links to ``.json`` result files is a
claim; each number on it written with three or more decimals (a metric, not a ratio or a count)
must equal, at the precision shown, a number in one of the files that line links to, or the
mean of one field over the linked files that hold it (the summary's mean over seeds). Every linked file must exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "eval/README.md")
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+\.json)\)")
NUMBER = re.compile(r"(?<![\w.@/-])(\d+\.\d{3,})(?![\w.])")


def _leaves(obj, path=()):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, float(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))


def claims(page: Path) -> list[tuple[int, list[str], list[Path]]]:
    """(line number, numbers, linked result files) of every line of ``page`` that links to results."""
    out = []
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        links = LINK.findall(line)
        if not links:
            continue
        text = re.sub(r"`[^`]*`", "", LINK.sub(lambda m: f" {m.group(1)} ", line))  # link targets and code out
        files = [(page.parent / target).resolve() for _, target in links]
        out.append((n, NUMBER.findall(text), files))
    return out


def found(number: str, files: list[Path], cache: dict) -> bool:
    """``number`` (as printed) is a value in one of ``files``, or a field's mean over them."""
    decimals = len(number.split(".")[1])
    want, tol = float(number), 0.5 * 10 ** -decimals + 1e-12
    by_path: dict[tuple, list[float]] = {}
    for f in files:
        if f not in cache:
            cache[f] = list(_leaves(json.loads(f.read_text(encoding="utf-8"))))
        for path, value in cache[f]:
            if abs(value - want) <= tol:
                return True
            by_path.setdefault(path, []).append(value)
    return any(len(v) > 1 and abs(sum(v) / len(v) - want) <= tol for v in by_path.values())


@pytest.mark.parametrize("page", PAGES)
def test_every_readme_number_is_in_its_linked_result(page):
    path = ROOT / page
    if not path.is_file():
        pytest.skip(f"{page} absent")
    cache: dict = {}
    missing, absent = [], []
    for line, numbers, files in claims(path):
        gone = [f for f in files if not f.is_file()]
        absent += [f"{page}:{line}: {f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}" for f in gone]
        if gone:
            continue
        missing += [f"{page}:{line}: {x} not in {[f.name for f in files]}" for x in numbers if not found(x, files, cache)]
    assert not absent, "links to missing result files:\n" + "\n".join(absent)
    assert not missing, "numbers not found in their linked result files:\n" + "\n".join(missing)


def test_the_check_catches_a_number_that_is_not_in_its_file(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"models": {"A": {"test": {"ndcg@10": 0.12345}}}}))
    (tmp_path / "s.json").write_text(json.dumps({"models": {"A": {"test": {"ndcg@10": 0.2}}}}))
    page = tmp_path / "README.md"
    page.write_text("| x | [A 0.1235](r.json) |\n| y | [A 0.1300](r.json) |\n"
                    "| z | A 0.1617 (mean of [1](r.json), [2](s.json)) |\n| w | 1.25x [A](r.json) |\n")
    cache: dict = {}
    verdicts = [all(found(x, files, cache) for x in numbers) for _, numbers, files in claims(page)]
    assert verdicts == [True, False, True, True]
