"""Every `curl` in docs/serving.md, run in order against demo-like artifacts, gives the documented answer.

The documented answer is the line after each command: ``# -> STATUS [JSON]``; the JSON must be
a part of the answer (every key given, with that value; the first element for a list answer).
Also: the generated load table in the docs is the one ``load_summary.json`` renders.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from serve_fixtures import DocExplainer, build_folders, doc_dataset  # noqa: E402

from textrec.serve.app import create_app  # noqa: E402
from textrec.serve.backends import ServedArtifact  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "serving.md"


def documented_curls(text: str) -> list[tuple[str, int, object]]:
    """``(command, status, expected JSON part or None)`` for every curl in the Markdown's bash blocks."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = block.replace("\\\n", " ").splitlines()
        for n, line in enumerate(lines):
            if not line.strip().startswith("curl ") or "localhost:8000" not in line:
                continue
            m = re.match(r"\s*# -> (\d{3})\s*(.*)$", lines[n + 1] if n + 1 < len(lines) else "")
            assert m, f"docs/serving.md: no '# -> STATUS' line after: {line.strip()}"
            out.append((line.strip(), int(m.group(1)), json.loads(m.group(2)) if m.group(2) else None))
    return out


def to_request(cmd: str) -> tuple[str, str, dict, bytes | None]:
    args = shlex.split(cmd)[1:]
    method, headers, data, url = None, {}, None, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-X":
            method, i = args[i + 1], i + 2
        elif a == "-H":
            k, v = args[i + 1].split(":", 1)
            headers[k.strip()] = v.strip()
            i += 2
        elif a == "-d":
            data, i = args[i + 1].encode(), i + 2
        elif a.startswith("-"):
            if "I" in a:
                method = "HEAD"
            i += 1
        else:
            url, i = a, i + 1
    if data is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/x-www-form-urlencoded"  # what curl -d sends
    path = url.split("localhost:8000", 1)[1] or "/"
    return method or ("POST" if data is not None else "GET"), path, headers, data


def contains(answer, part) -> bool:
    if isinstance(part, dict):
        return isinstance(answer, dict) and all(k in answer and contains(answer[k], v) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(answer, list) and len(answer) >= len(part) and all(
            contains(a, p) for a, p in zip(answer, part))
    return answer == part


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    folders = build_folders(root, names=("sas", "fusion"), ds=doc_dataset())
    fusion = ServedArtifact.load(folders["fusion"], name="ml-100k-textfusion")
    sas = ServedArtifact.load(folders["sas"], name="ml-100k-sasrec")
    inst = ServedArtifact.load(folders["sas"], name="instruments-ease")
    inst.explainer = DocExplainer()
    return TestClient(create_app([fusion, sas, inst], token="demo-token", warm=False), raise_server_exceptions=False)


def test_every_documented_curl_gives_the_documented_answer(demo):
    curls = documented_curls(DOC.read_text(encoding="utf-8"))
    assert len(curls) >= 14
    ids = [m for c, _, _ in curls for m in re.findall(r'"item_id": "([^"]+)"', c)]
    assert len(ids) == len(set(ids)) + 1  # one id is added twice on purpose (the idempotent retry), no other reuse
    for cmd, status, part in curls:
        method, path, headers, data = to_request(cmd)
        r = demo.request(method, path, headers={"Host": "localhost:8000", **headers}, content=data)
        assert r.status_code == status, (cmd, r.status_code, r.text)
        if part is not None:
            assert contains(r.json(), part), (cmd, r.text)


def test_generated_load_table_matches_the_result_file():
    from textrec.benchmarks.load import DOC_END, DOC_START, render_summary

    summary = Path(__file__).resolve().parents[1] / "eval" / "results" / "load_summary.json"
    if not summary.is_file():
        pytest.skip("no load_summary.json published yet")
    block = DOC.read_text(encoding="utf-8").split(DOC_START, 1)[1].split(DOC_END, 1)[0]
    assert block.strip() == render_summary(json.loads(summary.read_text(encoding="utf-8"))).strip()
