"""Template files: parsing, rendering, and errors that name the template."""

import pytest

from textrec.prompts import TemplateError, load_templates, select


def _write(tmp_path, body):
    p = tmp_path / "fam.yaml"
    p.write_text(body, encoding="utf-8")
    return p


def test_render_and_select(tmp_path):
    p = _write(tmp_path, """
family: seq
templates:
  - id: a
    source: "User {user} bought {history}."
    target: "{target}"
  - id: b
    source: "Reviews of {item}: {review}"
    target: "{target}"
    unseen: true
    requires: [reviews]
""")
    ts = load_templates(p)
    assert [t.id for t in ts] == ["a", "b"]
    assert ts[0].fields == ["user", "history", "target"]
    assert ts[0].render(user="u1", history="x, y", target="z") == ("User u1 bought x, y.", "z")
    assert [t.id for t in select(ts, unseen=False)] == ["a"]
    assert [t.id for t in select(ts, capabilities=set())] == ["a"]
    assert [t.id for t in select(ts, capabilities={"reviews"})] == ["a", "b"]


def test_missing_field_names_file_and_template(tmp_path):
    p = _write(tmp_path, "templates:\n  - id: t1\n    source: 'hi {user} {history}'\n    target: '{target}'\n")
    (t,) = load_templates(p)
    with pytest.raises(TemplateError, match=r"fam\.yaml.*'t1'.*'history'"):
        t.render(user="u", target="x")


@pytest.mark.parametrize("body,msg", [
    ("templates:\n  - id: t\n    source: 'x'\n", "target"),
    ("templates:\n  - id: t\n    source: '{a'\n    target: 'y'\n", "bad format"),
    ("templates:\n  - id: t\n    source: '{a.b}'\n    target: 'y'\n", "plain name"),
    ("templates:\n  - {id: t, source: a, target: b}\n  - {id: t, source: a, target: b}\n", "twice"),
    ("just text", "mapping"),
])
def test_bad_template_files(tmp_path, body, msg):
    with pytest.raises(TemplateError, match=msg):
        load_templates(_write(tmp_path, body))


def test_unknown_family():
    with pytest.raises(FileNotFoundError, match="no-such-family"):
        load_templates("no-such-family")
