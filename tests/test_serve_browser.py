"""The page at `/` and the report, in a real headless Chromium (Debian's package) driven by Playwright.

It types and clicks as a person would and asserts what they would see; a screenshot of each page
is kept (in ``$TEXTREC_SCREENSHOT_DIR`` when set, else in pytest's temp folder).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason="chromium is not installed (apt-get install chromium): browser test skipped")
playwright_api = pytest.importorskip("playwright.sync_api", reason="python package 'playwright' not installed")

from serve_fixtures import TOKEN, FakeExplainer, build_folders  # noqa: E402

# adding an item loads the text encoder on first use: seconds on a busy machine
playwright_api.expect.set_options(timeout=30_000)

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from textrec.serve.app import create_app
    from textrec.serve.backends import ServedArtifact

    root = tmp_path_factory.mktemp("browser")
    folders = build_folders(root, names=("vq", "sas"))
    vq = ServedArtifact.load(folders["vq"], name="tiny-vqrec")
    vq.explainer = FakeExplainer()
    app = create_app([vq, ServedArtifact.load(folders["sas"], name="tiny-sasrec")], token=TOKEN)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # a persistent context is how Playwright takes --user-data-dir: a fresh temp profile
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM,
                                                       args=LAUNCH_ARGS, headless=True)
        yield context
        context.close()


def _shot(page, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("TEXTREC_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000
    return path


def test_page_recommend_explain_query_add(server, browser, tmp_path):
    page = browser.new_page()
    page.set_default_timeout(15000)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server) else None)
    page.goto(server + "/")
    expect = playwright_api.expect
    expect(page.locator("#model option")).to_have_count(2)
    expect(page.locator("#model-info")).to_contain_text("VQRec")

    # a known user: recommendations with titles, history left out
    page.fill("#user", "u1")
    page.fill("#k", "5")
    page.click("#recommend-btn")
    recs = page.locator("#recs li")
    expect(recs).to_have_count(5)
    expect(recs.first).to_contain_text("number")
    expect(page.locator("#recs-for")).to_contain_text("user u1")

    # open one: the explanation, with the cited sentence's shared words highlighted
    recs.first.locator("button", has_text="why?").click()
    expect(page.locator("#explanation")).to_have_text("the harp sound is warm")
    expect(page.locator("#cited li")).to_have_count(1)
    expect(page.locator("#cited mark").first).to_have_text("warm")
    expect(page.locator("#explain-aspects")).to_have_text("sound")

    # the query written for the user, and what it retrieves
    page.click("#query-btn")
    expect(page.locator("#query-text")).not_to_be_empty()
    expect(page.locator("#query-method")).to_contain_text("raw-history")
    assert page.locator("#query-items li").count() >= 1

    # adding an item: a wrong token is refused and said so; the right one adds and ranks it
    page.fill("#add-title", "harp number 777")
    page.fill("#add-desc", "a small folk harp")
    page.fill("#add-token", "not-the-token")
    page.click("#add-btn")
    expect(page.locator("#error")).to_contain_text("wrong token")
    page.fill("#add-token", TOKEN)
    page.fill("#k", "25")
    page.click("#add-btn")
    expect(page.locator("#add-result")).to_contain_text("ranks #")
    expect(page.locator("#recs li.new")).to_have_count(1)
    expect(page.locator("#recs li.new")).to_contain_text("harp number 777")
    expect(page.locator("#error")).to_be_hidden()

    # a double click adds one item: the button is disabled (with progress shown) while the add runs,
    # and the request carries an idempotency key
    page.fill("#add-title", "harp number 778")
    n_before = page.evaluate("() => fetch('/health').then(r => r.json()).then(h => h.models[0].n_items)")
    state = page.evaluate("""() => { const b = document.getElementById('add-btn'); b.click(); b.click();
        return [b.disabled, document.getElementById('add-progress').hidden]; }""")
    assert state == [True, False]
    expect(page.locator("#add-result")).to_contain_text("harp number 778")
    expect(page.locator("#add-btn")).to_be_enabled()
    expect(page.locator("#add-progress")).to_be_hidden()
    n_after = page.evaluate("() => fetch('/health').then(r => r.json()).then(h => h.models[0].n_items)")
    assert n_after == n_before + 1

    # an ad-hoc history found by title search; a bad id is reported, not crashed on
    page.fill("#user", "")
    page.fill("#search", "cello")
    page.press("#search", "Enter")
    expect(page.locator("#search-results li").first).to_contain_text("cello")
    page.locator("#search-results button").first.click()
    expect(page.locator("#history")).to_have_value("i1")
    page.fill("#k", "3")
    page.click("#recommend-btn")
    expect(page.locator("#recs li")).to_have_count(3)
    page.fill("#history", "i1, nope")
    page.click("#recommend-btn")
    expect(page.locator("#error")).to_contain_text("unknown item id 'nope'")
    _shot(page, tmp_path, "serve_page.png")

    # an artifact without explainer or text encoder: the page hides what it cannot do
    page.select_option("#model", "tiny-sasrec")
    expect(page.locator("#add-panel")).to_be_hidden()
    expect(page.locator("#model-info")).to_contain_text("no explainer")
    page.fill("#history", "")
    page.fill("#user", "u2")
    page.click("#recommend-btn")
    expect(page.locator("#recs li").first).to_be_visible()
    assert page.locator("#recs button", has_text="why?").count() == 0
    assert not outside, f"the page fetched outside the server: {outside[:3]}"
    page.close()


def test_report_page_renders_plots(browser, tmp_path):
    from textrec.report import build_report

    committed = Path(__file__).resolve().parents[1] / "eval" / "results"
    picked = [committed / n for n in ("baselines_ml-100k.json", "vqrec_ml-100k.json", "vqrec_ml-100k_code_usage.png")]
    if not all(p.is_file() for p in picked):
        pytest.skip(f"committed results missing in {committed}")
    results = tmp_path / "results"  # a few real result files keep the test fast
    results.mkdir()
    for p in picked:
        shutil.copy2(p, results / p.name)
    html, _ = build_report(results, tmp_path / "report")
    page = browser.new_page()
    page.goto(html.as_uri())
    assert "textrec report" in page.title()
    images = page.locator("img")
    assert images.count() >= 3
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert all(w > 100 for w in widths), widths  # every plot loaded
    _shot(page, tmp_path, "report_page.png")
    page.close()
