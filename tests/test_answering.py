"""The answer stage with the fake embedder: titles and headings label answers, they are
not highlighted as the answer unless nothing else in the passage comes close, and a
document's title speaks for every chunk of it."""

from __future__ import annotations

import itertools
from pathlib import Path

import qa
from qa.answering import document_title, first_chunks
from tests.conftest import FakeEmbedder

FILLER = " ".join(f"Paragraph {i} describes the savanna grass, rain and soil in detail." for i in range(6))
ZEBRAS = (
    "Zebra stripes keep biting flies away\n\n"
    f"{FILLER}\n\n"
    "Experiments on horses in striped coats showed that zebra stripes keep biting flies away from the skin.\n"
)


def index_of(tmp_path: Path, docs: dict[str, str], **settings: object) -> qa.Index:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in docs.items():
        (corpus / name).write_text(text, encoding="utf-8")
    fake = FakeEmbedder()
    s = qa.Settings(corpus=corpus, index=tmp_path / "index", min_score=0.3, **settings)  # type: ignore[arg-type]
    qa.build_index(settings=s, embedder=fake)
    return qa.Index.load(s.index, s, embedder=fake)


def test_title_is_found_and_credited_to_every_chunk(tmp_path: Path) -> None:
    index = index_of(tmp_path, {"zebras.txt": ZEBRAS}, chunk_tokens=24, chunk_overlap=0)
    gen = index.generation
    assert len(gen.chunks) >= 3
    title = document_title(gen, 0)
    assert title is not None and ZEBRAS[title[0] : title[1]] == "Zebra stripes keep biting flies away"
    assert first_chunks(gen).tolist() == [0]
    answer = index.ask("Do zebra stripes keep biting flies away?")
    top = answer.quotes[0]
    # the title alone matches the question best; credited to every chunk of its document,
    # it lets the chunk with the best evidence after it be the quote, not the title's chunk
    assert "Experiments on horses" in top.text and "Zebra stripes keep biting flies away" not in top.text
    assert answer.found and answer.answer.startswith("Experiments on horses")
    assert ZEBRAS[top.start : top.end] == top.text


def test_title_is_not_the_highlight_when_a_sentence_is_close(tmp_path: Path) -> None:
    text = "Zebra stripes and biting flies\n\nZebra stripes repel biting flies.\n"
    index = index_of(tmp_path, {"z.txt": text})
    # the title's cosine is higher (1.0 vs 0.89 with the fake embedder), within the margin
    answer = index.ask("What do zebra stripes do to biting flies?")
    assert answer.quotes[0].highlight_text == "Zebra stripes repel biting flies."


def test_title_is_the_highlight_when_nothing_else_matches(tmp_path: Path) -> None:
    text = "Skerry Island lighthouse keeper feeds seventeen cats\n\nSupplies arrive by boat on Thursdays.\n"
    index = index_of(tmp_path, {"keeper.txt": text})
    answer = index.ask("How many cats does the Skerry Island lighthouse keeper feed?")
    assert answer.found and "seventeen cats" in answer.answer


def test_markdown_heading_is_not_the_answer(tmp_path: Path) -> None:
    text = "# Notes\n\nRemarks.\n\n## Zebra stripes and biting flies\nZebra stripes repel biting flies.\n"
    index = index_of(tmp_path, {"notes.md": text})
    answer = index.ask("What do zebra stripes do to biting flies?")
    assert answer.answer == "Zebra stripes repel biting flies."
    assert answer.quotes[0].highlight_location.endswith("Zebra stripes and biting flies")


def test_documents_without_titles_are_unaffected(tmp_path: Path) -> None:
    index = index_of(tmp_path, {"p.txt": "Zebras have stripes. Lions have manes.\n"})
    assert document_title(index.generation, 0) is None
    assert index.ask("Which animal has manes?").answer == "Lions have manes."


def test_quotes_never_overlap(tmp_path: Path) -> None:
    index = index_of(tmp_path, {"zebras.txt": ZEBRAS, "other.txt": FILLER}, chunk_tokens=30, chunk_overlap=1)
    chunks = index.generation.chunks.tolist()
    assert any(a[0] == b[0] and b[1] < a[2] for a, b in itertools.pairwise(chunks)), "chunks should overlap"
    answer = index.ask("What do the paragraphs say about savanna grass, rain and soil?", k=10)
    assert len(answer.quotes) >= 4
    for i, p in enumerate(answer.quotes):
        for q in answer.quotes[i + 1 :]:
            assert p.doc != q.doc or p.end <= q.start or q.end <= p.start, (p, q)


def test_quote_location_is_where_its_answer_is(tmp_path: Path) -> None:
    """A Markdown quote names the section of its answer ("Rye bread"), not the document's top
    heading; a PDF quote names the page of its answer."""
    from tests.test_documents import make_pdf

    md = (
        "# House recipes\n\nOur bakery has baked since 1991.\n\n"
        "## Sourdough\n\nFeed the starter at night.\n\n"
        "## Rye bread\n\nRye bread bakes for fifty minutes at 220 degrees.\n"
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "recipes.md").write_text(md, encoding="utf-8")
    (corpus / "report.pdf").write_bytes(
        make_pdf(["The walrus survey began.", "Walruses dive to ninety metres."])
    )
    fake = FakeEmbedder()
    s = qa.Settings(corpus=corpus, index=tmp_path / "index", chunk_tokens=200)
    qa.build_index(settings=s, embedder=fake)
    index = qa.Index.load(s.index, s, embedder=fake)
    rye = index.ask("How long does rye bread bake?").quotes[0]
    assert rye.doc == "recipes.md" and rye.start < md.index("## Sourdough")  # one chunk, several sections
    assert "fifty minutes" in rye.highlight_text
    assert rye.location == "House recipes > Rye bread" == rye.highlight_location
    dive = index.ask("How deep do walruses dive?").quotes[0]
    assert dive.doc == "report.pdf" and "ninety metres" in dive.highlight_text
    assert dive.start < dive.text.index("Walruses dive") + dive.start and dive.location == "page 2"
    assert dive.text.startswith("The walrus survey")  # the quote starts on page 1


CAMPSITE_HTML = """<html><head><title>Fellgate Farm Campsite</title></head><body>
<h1>Fellgate Farm Campsite</h1>
<p>A quiet site on a working sheep farm in the valley, open from April to October.</p>
<h2>The site at a glance</h2>
<table>
<tr><td>Pitches</td><td>42, of which 12 have electric hook-up</td></tr>
<tr><td>Check-in</td><td>2 pm to 8 pm</td></tr>
<tr><td>Check-out</td><td>by 11 am</td></tr>
<tr><td>Quiet hours</td><td>10.30 pm to 7 am</td></tr>
</table>
<p>Fresh milk and eggs from the farm are sold at the farmhouse door every morning from 8 am.</p>
</body></html>"""


def test_a_table_row_answers_and_its_time_is_the_phrase(tmp_path: Path) -> None:
    # a short table row reads like a label, but it holds the answer: it is not a heading
    index = index_of(tmp_path, {"campsite.html": CAMPSITE_HTML})
    answer = index.ask("What time is check-out at the farm?")
    top = answer.quotes[0]
    assert top.highlight_text == "Check-out | by 11 am"
    assert answer.phrase is not None and answer.phrase.text == "11 am"
    doc = index.generation.text(0)
    assert doc[answer.phrase.start : answer.phrase.end] == "11 am"


PRICES_HTML = """<html><body><h1>Prices per night</h1>
<p>Prices are per pitch per night and include two people.</p>
<table>
<tr><th>Pitch</th><th>Low season</th><th>High season</th></tr>
<tr><td>Small tent, 1 or 2 people</td><td>£16</td><td>£22</td></tr>
<tr><td>Campervan with electric hook-up</td><td>£32</td><td>£41</td></tr>
</table>
<p>The shop in the farmhouse sells milk and eggs.</p>
</body></html>"""


def test_the_phrase_of_a_table_row_is_the_cell_of_the_column_asked_for(tmp_path: Path) -> None:
    index = index_of(tmp_path, {"prices.html": PRICES_HTML})
    doc = index.generation.text(0)
    for question, row, cell in [
        ("How much is a small tent pitch in low season?", "Small tent", "£16"),
        ("How much does a campervan with electric hook-up cost in high season?", "Campervan", "£41"),
    ]:
        answer = index.ask(question)
        assert answer.quotes[0].highlight_text.splitlines()[-1].startswith(row), question
        assert answer.phrase is not None and answer.phrase.text == cell, (question, answer.phrase)
        assert doc[answer.phrase.start : answer.phrase.end] == cell


RECIPE_MD = """# Seeded spelt loaf

Our most popular loaf, baked every morning at the Millbrook Bakery since 1991.

## Ingredients

- 1.2 kg wholemeal spelt flour
- 24 g fine sea salt
- 10 g fresh yeast

## Method

Mix the flours and the water and leave the dough to rest for an hour.
"""


def test_a_list_item_is_the_answer(tmp_path: Path) -> None:
    # "- 24 g fine sea salt" is a short line without a full stop, but a list item, not a heading
    index = index_of(tmp_path, {"recipe.md": RECIPE_MD})
    answer = index.ask("How much fine sea salt is in the seeded spelt loaf?")
    assert answer.quotes[0].highlight_text == "- 24 g fine sea salt"
    assert answer.phrase is not None and answer.phrase.text == "24 g"


SPEC_MD = """# MV Maren Skye: technical sheet

MV Maren Skye is a double-ended passenger ferry built for the crossing to the island of Inchvarra.

## Principal particulars

Length overall | 52.4 m
Passengers | 250
Crew | 8
Call sign | 2KTM7
Launched | 2 November 2017

## Operating notes

The master of the ferry is Captain Ailsa Drummond, who has commanded the ship since 2018.
"""


def test_a_key_value_row_is_read_with_the_document_it_describes(tmp_path: Path) -> None:
    # "Passengers | 250" leaves its subject unsaid; the prose sentence names the ship and
    # "passenger": read with the title, the row is the answer and its value the phrase
    index = index_of(tmp_path, {"ferry.md": SPEC_MD})
    doc = index.generation.text(0)
    for question, row, value in [
        ("How many passengers can MV Maren Skye carry?", "Passengers | 250", "250"),
        ("What is the call sign of MV Maren Skye?", "Call sign | 2KTM7", "2KTM7"),
    ]:
        answer = index.ask(question)
        assert answer.quotes[0].highlight_text == row, question
        assert answer.phrase is not None and answer.phrase.text == value, (question, answer.phrase)
        assert doc[answer.phrase.start : answer.phrase.end] == value
    # a row that shares no word with the question gets nothing from the title: a question that
    # names the ship does not find the ship's name in every row
    answer = index.ask("Who is the master of MV Maren Skye?")
    assert "|" not in answer.quotes[0].highlight_text
