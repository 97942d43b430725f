"""The web app in Chromium, end to end, with the real model: ``qa serve`` is started as a
subprocess on a temp copy of the default corpus with no index (so it builds one first), and
Playwright drives Debian's Chromium (/usr/bin/chromium; Playwright's own browser is not used).

Checks: the default question is answered with a quote containing "Foxconn" and a highlighted
sentence; a citation opens the source view; an uploaded document is indexed by "Rebuild index"
and answers a question; a hostile document (script tag, onerror image, Markdown image, iframe)
and a hostile file name render inert: no dialog, no ``window.__xss``, no request to any host
but the app's. ``QA_UPDATE_SCREENSHOT=1`` also saves docs/screenshot.png.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM
from tests.helpers.serving import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"
HOSTILE_NAME = '<img src=x onerror="window.__xss=2">.txt'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.model,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``qa serve`` on a free loopback port, over a temp corpus and a not-yet-built index:
    yields (url, corpus folder)."""
    tmp = tmp_path_factory.mktemp("ui")
    corpus = tmp / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "qa.cli", "serve", "--corpus", str(corpus), "--index", str(tmp / "index")]
    with serving([*cmd, "--port", str(port)], port, tmp / "serve.log", env=env, cwd=tmp) as url:
        served = (tmp / "serve.log").read_text()
        assert "No index at" in served and "embedding" in served  # first run built the index
        yield url, corpus


@pytest.fixture(scope="module")
def app_url(served: tuple[str, Path]) -> str:
    return served[0]


class Page:
    """A page of the app with every request and dialog recorded."""

    def __init__(self, browser: Any, url: str) -> None:
        self.url = url
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(url, wait_until="domcontentloaded")
        self.page.locator("#qa-question textarea").wait_for(timeout=60_000)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def ask(self, question: str) -> Any:
        """Ask through the chat box; return the locator of the new turn once it is answered."""
        turns = self.page.locator("#qa-transcript .qa-turn")
        n = turns.count()
        self.page.locator("#qa-question textarea").fill(question)
        self.page.locator("#qa-ask").click()
        turn = turns.nth(n)
        turn.locator(".qa-reply .qa-quote, .qa-reply .qa-error").first.wait_for(timeout=60_000)
        return turn

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()

    def upload_and_rebuild(self, *paths: Path) -> str:
        self.tab("Documents")
        self.page.locator("#qa-upload input[type=file]").set_input_files([str(p) for p in paths])
        self.page.locator("#qa-upload-out", has_text="Added").wait_for(timeout=60_000)
        self.page.locator("#qa-rebuild").click()
        done = self.page.locator("#qa-build", has_text="Rebuild finished")
        done.wait_for(timeout=180_000)
        text: str = done.inner_text()
        self.tab("Chat")
        return text

    def foreign_requests(self) -> list[str]:
        own = self.url.rstrip("/")
        return [
            u for u in self.requests if not (u.startswith(own) or u.startswith(("data:", "blob:", "about:")))
        ]


def test_default_question_quote_highlight_and_source_view(browser: Any, app_url: str) -> None:
    p = Page(browser, app_url)
    t0 = time.perf_counter()
    turn = p.ask(QUESTION)
    seconds = time.perf_counter() - t0
    print(f"time to first answer in the UI: {seconds:.2f} s")
    assert turn.locator(".qa-found").count() == 1
    quotes = turn.locator("blockquote.qa-text")
    assert any("Foxconn" in t for t in quotes.all_inner_texts())
    first = quotes.first
    assert first.locator("mark").count() == 1 and first.locator("mark").inner_text().strip()
    turn.locator("button.qa-cite").first.click()
    head = p.page.locator("#qa-source .qa-source-head")
    head.wait_for(timeout=30_000)
    assert "openai-foxconn-ai-hardware.txt" in head.inner_text()
    assert "chars " in head.inner_text() and " of " in head.inner_text()
    assert p.page.locator("#qa-source mark").count() == 1
    # the dropdown of the last answer's citations opens the source view too
    p.page.locator("#qa-cite-pick input").click()
    p.page.get_by_role("option").nth(1).click()
    second = turn.locator(".qa-meta").nth(1).inner_text().split(" · ")[0]  # "chars a–b"
    p.page.locator("#qa-source .qa-offsets", has_text=second + " of ").wait_for(timeout=30_000)
    not_found = p.ask("What is the boiling point of liquid nitrogen in Kelvin?")
    assert "Not found in the documents" in not_found.inner_text()
    assert "Nearest passages" in not_found.inner_text()
    assert p.dialogs == [] and p.foreign_requests() == []
    assert seconds < 30
    p.page.close()
    if os.environ.get("QA_UPDATE_SCREENSHOT"):  # docs/screenshot.png: one answered question
        shot = Page(browser, app_url)
        shot.ask(QUESTION).locator("button.qa-cite").first.click()
        shot.page.locator("#qa-source mark").wait_for(timeout=30_000)
        shot.page.wait_for_timeout(500)
        shot.page.screenshot(path=str(ROOT / "docs" / "screenshot.png"), full_page=True)
        shot.page.close()


def test_upload_rebuild_then_answer_from_new_document(browser: Any, app_url: str) -> None:
    p = Page(browser, app_url)
    report = p.upload_and_rebuild(DATA / "ui_glorbix.txt")
    assert "1 added" in report
    turn = p.ask("Who founded the Glorbix Festival?")
    assert turn.locator(".qa-found").count() == 1
    cites = turn.locator("button.qa-cite").all_inner_texts()
    assert "ui_glorbix.txt" in cites[0]
    assert "Odalys Prent" in turn.locator("blockquote.qa-text").first.inner_text()
    p.tab("Documents")
    row = p.page.locator("#qa-docs tr", has_text="ui_glorbix.txt")
    assert "indexed" in row.inner_text()
    assert p.dialogs == [] and p.foreign_requests() == []
    p.page.close()


def test_hostile_document_and_name_render_inert(browser: Any, served: tuple[str, Path]) -> None:
    app_url, corpus = served
    (corpus / HOSTILE_NAME).write_text("This file with a hostile name is about wombats. Wombats dig burrows.")
    p = Page(browser, app_url)
    p.upload_and_rebuild(DATA / "ui_xss.md")
    turn = p.ask("What must the quokka sanitizer keep?")
    wombat = p.ask("What do wombats dig?")
    wombat.locator("button.qa-cite").first.click()
    p.page.locator("#qa-source .qa-source-text", has_text="Wombats dig burrows").wait_for(timeout=30_000)
    wombat_head = p.page.locator("#qa-source .qa-source-head").inner_text()
    turn.locator("button.qa-cite").first.click()
    p.page.locator("#qa-source .qa-source-head", has_text="ui_xss.md").wait_for(timeout=30_000)
    source = p.page.locator("#qa-source").inner_text()
    p.tab("Documents")
    docs = p.page.locator("#qa-docs").inner_text()
    p.page.wait_for_timeout(1000)  # give any injected image or script time to fire
    # inert: nothing ran, nothing was fetched, no element was injected
    assert p.page.evaluate("typeof window.__xss") == "undefined"
    assert p.dialogs == []
    assert p.foreign_requests() == []
    for where in ("#qa-transcript", "#qa-source", "#qa-docs"):
        assert p.page.locator(f"{where} img, {where} script, {where} iframe").count() == 0
    # ... and shown as the literal text it is
    assert "<script>alert(1)</script>" in turn.inner_text()
    assert '<img src=x onerror="window.__xss=1">' in source
    assert "![x](http://127.0.0.2:9/x.png)" in source
    assert HOSTILE_NAME in wombat.locator("button.qa-cite").first.inner_text()
    assert HOSTILE_NAME in wombat_head and HOSTILE_NAME in docs
    p.page.close()


def test_phrase_is_bold_inside_the_highlight_and_nearest_passages_are_not_yellow(
    browser: Any, app_url: str
) -> None:
    p = Page(browser, app_url)
    turn = p.ask(QUESTION)
    phrase = turn.locator("blockquote.qa-text mark strong.qa-phrase").first
    assert phrase.inner_text() == "Foxconn"
    assert int(phrase.evaluate("e => parseInt(getComputedStyle(e).fontWeight)")) >= 700
    assert "confidence" in turn.locator(".qa-found").inner_text()
    refused = p.ask("What is the capital of Peru?")
    assert "Not found in the documents" in refused.inner_text()
    quotes = refused.locator("li.qa-quote")
    assert quotes.count() >= 1 and refused.locator("li.qa-nearest").count() == quotes.count()
    assert refused.locator("mark").count() == 0
    yellow = "rgb(253, 230, 138)"  # the answer highlight (#fde68a)
    backgrounds = refused.locator("blockquote.qa-text, blockquote.qa-text *").evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert yellow not in backgrounds
    # a nearest passage opened in the source view is outlined, not marked as an answer
    refused.locator("button.qa-cite").first.click()
    p.page.locator("#qa-source .qa-passage").first.wait_for(timeout=30_000)
    assert p.page.locator("#qa-source mark").count() == 0
    p.page.close()


def test_follow_up_shows_what_was_searched_and_new_conversation_clears_it(browser: Any, app_url: str) -> None:
    p = Page(browser, app_url)
    p.ask(QUESTION)
    follow = p.ask("Where will they build it?")
    searched = follow.locator(".qa-searched")
    assert searched.count() == 1 and searched.inner_text().startswith("Searched for:")
    assert "Where will" in searched.inner_text() and "OpenAI" in searched.inner_text()
    assert "United States" in follow.locator(".qa-found").inner_text()
    # asked again on its own: a new turn, without history
    follow.locator("button.qa-alone").click()
    turns = p.page.locator("#qa-transcript .qa-turn")
    turns.nth(2).locator(".qa-reply .qa-quote, .qa-reply .qa-error").first.wait_for(timeout=60_000)
    assert turns.nth(2).locator(".qa-question").inner_text() == "Where will they build it?"
    assert turns.nth(2).locator(".qa-searched").count() == 0
    # a new conversation: the transcript is cleared and history is not used any more
    p.page.locator("#qa-new").click()
    p.page.locator("#qa-transcript .qa-empty").wait_for(timeout=30_000)
    assert turns.count() == 0
    again = p.ask("Where will they build it?")
    assert again.locator(".qa-searched").count() == 0
    assert p.dialogs == [] and p.foreign_requests() == []
    p.page.close()
