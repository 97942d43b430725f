"""What a new user trips over, in Chromium (issue 12): the newest answer comes into view,
deletes ask first and can be undone, a phone (375 px) gets the source view on screen and a
readable documents table, examples ask when clicked, an over-long paste is said to be cut,
a second rebuild is refused visibly, a PDF quote is boxed on its rendered page where it is
printed, and a watched corpus updates the page.

The app runs as a subprocess with the fake embedder (``tests.helpers.fake_serve``): these
check the page's behaviour; tests/test_browser.py runs the real model end to end.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM
from tests.helpers import pdfs
from tests.helpers.serving import free_port, serving
from tests.test_browser import Page

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


def _serve(tmp: Path, *extra: str) -> Iterator[tuple[str, Path]]:
    corpus = tmp / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    pdf, _ = pdfs.sentence_lines()
    (corpus / "survey.pdf").write_bytes(pdf)
    port = free_port()
    cmd = [sys.executable, "-m", "tests.helpers.fake_serve", str(corpus), str(tmp / "index"), str(port)]
    with serving([*cmd, *extra], port, tmp / "serve.log", cwd=ROOT, timeout=120) as url:
        yield url, corpus


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app watching its corpus (changes are indexed in the background)."""
    yield from _serve(tmp_path_factory.mktemp("newcomer"), "--watch")


@pytest.fixture(scope="module")
def slow_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app without a watcher, each build embedding call taking 3 s: a rebuild to click at."""
    yield from _serve(tmp_path_factory.mktemp("slow"), "--slow", "3")


def _open(browser: Any, url: str, width: int = 1400, height: int = 900) -> Page:
    p = Page.__new__(Page)
    p.url, p.requests, p.dialogs = url, [], []
    p.page = browser.new_page(viewport={"width": width, "height": height})
    p.page.on("request", lambda r: p.requests.append(r.url))
    p.page.on("dialog", p._dialog)
    p.page.goto(url, wait_until="domcontentloaded")
    p.page.locator("#qa-question textarea").wait_for(timeout=60_000)
    return p


def _in_view(page: Any, selector_or_locator: Any, within: str | None = None) -> bool:
    """Whether the element's top lies inside the viewport (and inside ``within``'s box)."""
    loc = page.locator(selector_or_locator) if isinstance(selector_or_locator, str) else selector_or_locator
    box = loc.bounding_box()
    if box is None:
        return False
    height = page.viewport_size["height"]
    if not (-2 <= box["y"] <= height - 10):
        return False
    if within is not None:
        outer = page.locator(within).bounding_box()
        return outer is not None and outer["y"] - 2 <= box["y"] <= outer["y"] + outer["height"] - 10
    return True


# ---------------------------------------------------------------------------------- item 1


def test_newest_answer_scrolls_into_view_and_stays(browser: Any, app: tuple[str, Path]) -> None:
    p = _open(browser, app[0])
    questions = [QUESTION, "Why is Foxconn interested in AI servers?", "Which otter guards the old mill?"]
    for q in questions:
        turn = p.ask(q)
        question = turn.locator(".qa-question")
        box = "#qa-transcript .html-container"
        p.page.wait_for_function(
            """([turnIndex]) => {
                const t = document.querySelectorAll('#qa-transcript .qa-turn')[turnIndex];
                const box = document.querySelector('#qa-transcript .html-container');
                if (!t || !box) return false;
                const a = t.getBoundingClientRect(), b = box.getBoundingClientRect();
                return a.top >= b.top - 2 && a.top < b.bottom - 20 && a.top >= -2 && a.top < innerHeight;
            }""",
            arg=[questions.index(q)],
            timeout=10_000,
        )
        assert _in_view(p.page, question, within=box)
    p.page.wait_for_timeout(1500)  # quotes rendered, fonts settled: still in view
    last = p.page.locator("#qa-transcript .qa-turn").nth(2).locator(".qa-question")
    assert _in_view(p.page, last, within="#qa-transcript .html-container")
    scrolled = p.page.evaluate("document.querySelector('#qa-transcript .html-container').scrollTop")
    assert scrolled > 500, "the box scrolled down to the third answer"
    p.page.close()


# ---------------------------------------------------------------------------------- item 5


def test_delete_asks_first_then_restores_from_the_trash(browser: Any, app: tuple[str, Path]) -> None:
    url, corpus = app
    (corpus / "badgers.txt").write_text("Badgers dig setts at the edge of woods.")
    p = _open(browser, url)
    p.tab("Documents")
    p.page.locator("#qa-delete").click()
    p.page.locator("#qa-upload-out", has_text="Pick a document to delete first.").wait_for(timeout=10_000)
    p.page.get_by_role("button", name="Refresh").click()
    p.page.locator("#qa-delete-pick input").click()
    p.page.get_by_role("option", name="badgers.txt").click()
    p.page.locator("#qa-delete").click()
    confirm = p.page.locator("#qa-confirm-text", has_text="Delete badgers.txt?")
    confirm.wait_for(timeout=10_000)
    assert "trash" in confirm.inner_text()
    assert (corpus / "badgers.txt").exists(), "nothing is deleted before the confirmation"
    p.page.locator("#qa-confirm-cancel").click()
    p.page.locator("#qa-upload-out", has_text="Nothing deleted.").wait_for(timeout=10_000)
    assert (corpus / "badgers.txt").exists()
    p.page.locator("#qa-delete").click()
    yes = p.page.locator("#qa-confirm-delete")
    yes.wait_for(timeout=10_000)
    assert yes.inner_text() == "Delete badgers.txt"
    yes.click()
    p.page.locator("#qa-upload-out", has_text="Moved badgers.txt to the trash").wait_for(timeout=10_000)
    assert not (corpus / "badgers.txt").exists()
    p.page.locator("#qa-trash-pick input").click()
    p.page.get_by_role("option", name="badgers.txt").first.click()
    p.page.locator("#qa-restore").click()
    p.page.locator("#qa-upload-out", has_text="Restored badgers.txt").wait_for(timeout=10_000)
    assert (corpus / "badgers.txt").read_text().startswith("Badgers dig setts")
    assert p.dialogs == [] and p.foreign_requests() == []
    p.page.close()


# ---------------------------------------------------------------------------------- item 6


def test_phone_citation_brings_the_source_view_and_table_is_readable(
    browser: Any, app: tuple[str, Path]
) -> None:
    p = _open(browser, app[0], width=375, height=740)
    turn = p.ask(QUESTION)
    cite = turn.locator("button.qa-cite").first
    cite.scroll_into_view_if_needed()
    before = p.page.locator("#qa-source").bounding_box()
    assert before is not None and before["y"] > 740, "the source view starts below the screen"
    cite.click()
    p.page.locator("#qa-source .qa-source-head").wait_for(timeout=30_000)
    p.page.wait_for_function(
        """() => { const m = document.querySelector('#qa-source mark');
                   if (!m) return false; const r = m.getBoundingClientRect();
                   return r.top >= 0 && r.bottom <= innerHeight; }""",
        timeout=10_000,
    )
    p.tab("Documents")
    p.page.locator("#qa-docs td").first.wait_for(timeout=10_000)
    broken = p.page.evaluate(
        """() => {
            const bad = [];
            for (const cell of document.querySelectorAll('#qa-docs td, #qa-docs th')) {
              const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
              let node;
              while ((node = walker.nextNode())) {
                const re = /\\S+/g; let m;
                while ((m = re.exec(node.data))) {
                  const r = document.createRange();
                  r.setStart(node, m.index);
                  r.setEnd(node, m.index + m[0].length);
                  const rects = [...r.getClientRects()].filter(x => x.width > 0);
                  const tops = new Set(rects.map(x => Math.round(x.top)));
                  if (tops.size > 1 && m[0].length < 30) bad.push(m[0]);
                }
              }
            }
            return bad;
        }"""
    )
    assert broken == [], f"words broken across lines at 375 px: {broken}"
    assert p.page.evaluate("document.documentElement.scrollWidth") <= 375
    assert "indexed" in p.page.locator("#qa-docs").inner_text()
    p.page.close()


# ---------------------------------------------------------------------------------- item 7


def test_example_asks_and_long_paste_is_said_to_be_cut(browser: Any, app: tuple[str, Path]) -> None:
    p = _open(browser, app[0])
    p.page.get_by_text("What kinds of devices will the collaboration produce?").click()
    turn = p.page.locator("#qa-transcript .qa-turn").first
    turn.locator(".qa-reply .qa-quote, .qa-reply .qa-error").first.wait_for(timeout=60_000)
    assert "What kinds of devices" in turn.locator(".qa-question").inner_text()
    box = p.page.locator("#qa-question textarea")
    assert box.get_attribute("maxlength") == "2000"
    p.page.evaluate(
        """() => { const ta = document.querySelector('#qa-question textarea'); ta.focus();
                   const dt = new DataTransfer(); dt.setData('text/plain', 'x'.repeat(3000));
                   ta.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true})); }"""
    )
    note = p.page.locator("#qa-paste .qa-paste-note")
    note.wait_for(state="visible", timeout=5_000)
    assert "3,000 characters" in note.inner_text() and "cut to 2,000" in note.inner_text()
    box.fill("short again")
    note.wait_for(state="hidden", timeout=5_000)
    p.page.close()


def test_second_rebuild_is_refused_visibly(browser: Any, slow_app: tuple[str, Path]) -> None:
    url, corpus = slow_app
    (corpus / "heron.md").write_text("# Herons\n\nHerons stand still in shallow water.\n")
    first, second = _open(browser, url), _open(browser, url)
    for p in (first, second):
        p.tab("Documents")
    first.page.locator("#qa-rebuild").click()
    assert first.page.locator("#qa-rebuild").is_disabled(), "disabled at once: a double click cannot queue"
    first.page.locator("#qa-build", has_text="Rebuilding: embedding 0/1 chunks").wait_for(timeout=30_000)
    second.page.locator("#qa-rebuild").click()
    refused = second.page.locator("#qa-rebuild-note", has_text="Rebuild refused: one is already running")
    refused.wait_for(timeout=30_000)
    first.page.locator("#qa-build", has_text="Rebuild finished").wait_for(timeout=120_000)
    first.page.wait_for_function("() => !document.querySelector('#qa-rebuild').disabled", timeout=10_000)
    for p in (first, second):
        p.page.close()


# ---------------------------------------------------------------------------------- item 9


def test_pdf_quote_is_boxed_on_its_page(browser: Any, app: tuple[str, Path]) -> None:
    _, truth = pdfs.sentence_lines()
    text, (left, bottom, right, top) = truth[5]
    p = _open(browser, app[0])
    words = text.rstrip(".").split()
    # "The amber heron guards the keen otter near the old mill number 5." -> a question on it
    place = " ".join(words[9:])
    turn = p.ask(f"Which {words[1]} {words[2]} {words[3]} the {words[5]} {words[6]} near the {place}?")
    cites = turn.locator("button.qa-cite")
    target = next(i for i, t in enumerate(cites.all_inner_texts()) if "survey.pdf" in t)
    cites.nth(target).click()
    img = p.page.locator("#qa-source img.qa-page-img")
    img.wait_for(timeout=60_000)
    p.page.wait_for_function("() => document.querySelector('#qa-source img.qa-page-img').complete")
    assert "page 1 of 1" in p.page.locator("#qa-source .qa-page-head").inner_text()
    answer_box = p.page.locator("#qa-source .qa-box-answer")
    assert answer_box.count() == 1
    i, a = img.bounding_box(), answer_box.bounding_box()
    assert i is not None and a is not None
    # where reportlab drew the sentence, as fractions of the A4 page (595 x 842 pt, y down)
    want = (left / 595.28, 1 - top / 841.89, right / 595.28, 1 - bottom / 841.89)
    got = (
        (a["x"] - i["x"]) / i["width"],
        (a["y"] - i["y"]) / i["height"],
        (a["x"] + a["width"] - i["x"]) / i["width"],
        (a["y"] + a["height"] - i["y"]) / i["height"],
    )
    ix = max(0.0, min(want[2], got[2]) - max(want[0], got[0]))
    iy = max(0.0, min(want[3], got[3]) - max(want[1], got[1]))
    union = (want[2] - want[0]) * (want[3] - want[1]) + (got[2] - got[0]) * (got[3] - got[1]) - ix * iy
    assert ix * iy / union >= 0.5, (want, got)
    assert _in_view(p.page, answer_box)
    assert p.foreign_requests() == []  # the image is inline: no request for it
    p.page.close()


# ---------------------------------------------------------------------------------- item 8


def test_watched_corpus_updates_the_page(browser: Any, app: tuple[str, Path]) -> None:
    url, corpus = app
    p = _open(browser, url)
    p.page.locator("#qa-watch", has_text="Watching").wait_for(timeout=30_000)
    (corpus / "walrus.txt").write_text("Walruses haul out on sea ice to rest.")
    p.page.locator("#qa-watch", has_text="walrus.txt").wait_for(timeout=60_000)
    assert "added (walrus.txt" in p.page.locator("#qa-watch").inner_text()
    assert "index last updated" in p.page.locator("#qa-watch").inner_text()
    turn = p.ask("Where do walruses haul out to rest?")
    assert "walrus.txt" in turn.locator("button.qa-cite").first.inner_text()
    p.page.close()
