"""Phrases: what kind of answer a question expects, and the typed phrases a passage offers.

A question's *answer type* comes from its wh-word and the noun after it ("when", "what year"
-> date; "how many", "how tall" -> number; "who" -> person or organisation; "where", "in which
country" -> place; "which river" -> a named thing). A passage's *candidates* are spans found
with patterns: dates (years, months, centuries, decades, times), numbers (digits, number words,
ordinals, money, percentages, measures) and names (runs of capitalised words, with "of", "the",
"de"... inside, but not "and" or "for": "Coldplay and Beyoncé" are two names). The answer
phrase is the candidate of the expected type nearest to the
question's words in the answer window, e.g. for "Who is OpenAI partnering with to manufacture
AI hardware?" in "OpenAI has announced a new partnership with Hon Hai Precision Industry
Company, better known as Foxconn, ..." the names are "OpenAI" (in the question: skipped),
"Hon Hai Precision Industry Company" and "Foxconn".

Every span is a pair of character offsets into the text it was found in, so a phrase is
verbatim by construction. Patterns, not a tagger: no spaCy/NLTK model installs from PyPI
offline, and these rules cost microseconds per sentence.

Non-goals: full named-entity recognition, parsing, languages other than English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Answer types.
DATE = "date"
NUMBER = "number"
PERSON = "person"  # a person or an organisation: a name
PLACE = "place"
NAME = "name"  # a named thing of another kind ("which river", "what company")
OTHER = "other"  # why / how / what-is questions: answered by a sentence, not a phrase

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sep\.|Sept\.|Oct\.|Nov\.|Dec\.)"
)
_NUMWORD = (
    r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|"
    r"ninety|hundred|thousand|million|billion|trillion|dozen|dozens|hundreds|thousands|millions|"
    r"billions|half|a\s+hundred|a\s+thousand|a\s+million)"
)
_ORDWORD = (
    r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    r"thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|"
    r"twenty-first|last)"
)
_DIGITS = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE = r"(?:\s+(?:hundred|thousand|million|billion|trillion|bn|m)\b)?"
_UNIT = (
    r"(?:\s?%|\s*(?:percent|per\s+cent|°\s?[CF]?|degrees(?:\s+(?:Celsius|Fahrenheit))?|"
    r"(?:square\s+|cubic\s+)?(?:kilo|centi|milli)?(?:met(?:re|er)s?|grams?)|km2?|m2|cm|mm|kg|mg|g|"
    r"(?:nautical\s+)?miles?|knots?|mi|feet|foot|ft|inch(?:es)?|in\.|yards?|acres?|hectares?|(?:milli|centi)?(?:litres?|liters?)|ml|cl|gallons?|"
    r"tons?|tonnes?|pounds?|lbs?|ounces?|oz|mph|km/h|MW|GW|kW|watts?|volts?|hertz|Hz|bytes?|"
    r"[kMGT]B|years?|months?|weeks?|days?|hours?|minutes?|seconds?|centuries|decades)\b)?"
)
_MONEY = (
    r"(?:[$£€¥]\s?(?:"
    + _DIGITS
    + r")"
    + _SCALE
    + r"|(?:"
    + _DIGITS
    + r")"
    + _SCALE
    + r"\s+(?:dollars|euros|pounds|yen|USD|EUR|GBP))"
)

_DATE_RE = re.compile(
    r"\b(?:"
    + r"(?:"
    + _MONTH
    + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{3,4})"  # March 5, 1999
    + r"|(?:\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?"
    + _MONTH
    + r",?\s+\d{3,4})"  # 5 March 1999
    + r"|(?:"
    + _MONTH
    + r",?\s+\d{3,4})"  # March 1999
    + r"|(?:"
    + _MONTH
    + r"\s+\d{1,2}(?:st|nd|rd|th)?)"  # March 5
    + r"|(?:\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?"
    + _MONTH
    + r")"  # 5 March
    + r"|(?:(?:early|mid|late)[- ])?\d{3,4}s"  # 1990s, mid-1970s
    + r"|(?:\d{1,2}(?:st|nd|rd|th)|"
    + _ORDWORD
    + r")[- ]century"  # 16th century
    + r"|\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?"  # 10:30 pm
    + r"|\d{1,2}(?:[.:]\d{2})?\s?[ap]\.?m"  # 9 a.m., 11 am, 10.30 pm, 7pm
    + r"|(?:1\d{3}|20\d{2}|\d{1,3}\s?(?:BC|BCE|AD|CE))"  # years
    + r"|"
    + _MONTH
    + r"|(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
    + r")\b",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(
    r"(?:"
    + _MONEY
    + r"|(?<![\w.])(?:"
    + _DIGITS
    + r")"
    + _SCALE
    + _UNIT
    + r"|\b"
    + _NUMWORD
    + r"(?:[\s-]+"
    + _NUMWORD
    + r")*"
    + _UNIT
    + r"|\b(?:\d+(?:st|nd|rd|th)|"
    + _ORDWORD
    + r"))(?![\w])",
    re.IGNORECASE,
)
# Lower-case words that join the capitalised words of one name ("Bank of England", "van Gogh").
NAME_JOINERS = r"(?:of|the|de|del|della|da|di|du|des|van|von|der|den|la|le|al|bin|&)"
# Runs of capitalised words; lower-case joiners only between them.
_NAME_RE = re.compile(
    r"(?<![\w'’])(?:[A-Z][\w'’.&-]*|[A-Z]{2,})"
    r"(?:(?:[ \t]+" + NAME_JOINERS + r")*"
    r"[ \t]+(?:[A-Z][\w'’.&-]*|\d+))*"
)
# Capitalised words that start sentences without naming anything (wh-words, pronouns...).
COMMON_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "he",
        "she",
        "they",
        "we",
        "i",
        "you",
        "his",
        "her",
        "their",
        "our",
        "my",
        "your",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "with",
        "without",
        "after",
        "before",
        "during",
        "while",
        "when",
        "where",
        "why",
        "how",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "there",
        "here",
        "however",
        "although",
        "though",
        "but",
        "and",
        "or",
        "so",
        "yet",
        "also",
        "then",
        "thus",
        "therefore",
        "since",
        "because",
        "as",
        "if",
        "unless",
        "until",
        "once",
        "both",
        "each",
        "every",
        "all",
        "some",
        "many",
        "most",
        "few",
        "several",
        "other",
        "another",
        "such",
        "no",
        "not",
        "one",
        "two",
        "three",
        "first",
        "second",
        "third",
        "last",
        "many",
        "much",
        "more",
        "less",
        "according",
        "despite",
        "among",
        "between",
        "under",
        "over",
        "into",
        "through",
        "about",
        "above",
        "below",
        "around",
        "near",
        "today",
        "later",
        "early",
        "late",
        "some",
        "other",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
    ]
)
_STOP_NAME_TAIL = re.compile(r"(?:[ \t]+" + NAME_JOINERS + r")+$")

# Question patterns, checked in order: the first match decides the answer type.
_QTYPE = [
    (
        re.compile(
            r"\b(?:how\s+(?:many|much|long|old|far|tall|high|large|big|wide|deep|heavy|fast|"
            r"often|hot|cold|warm)|what\s+(?:percentage|percent|proportion|fraction|number|"
            r"amount|size|population|length|height|distance|speed|temperature|cost|price|rate)|"
            r"at\s+what\s+(?:age|speed|rate|temperature))\b",
            re.I,
        ),
        NUMBER,
    ),
    (
        re.compile(
            r"\b(?:when|what\s+(?:year|years|date|day|month|century|decade|time|period|era|age)|"
            r"which\s+(?:year|years|date|day|month|century|decade|period|era)|"
            r"(?:in|by|since|until)\s+what\s+(?:year|century|decade))\b",
            re.I,
        ),
        DATE,
    ),
    (
        re.compile(
            r"\b(?:where|what\s+(?:country|city|town|state|region|place|location|area|continent|"
            r"island|province|county|nation|village|street|district)|which\s+(?:country|city|town|"
            r"state|region|place|location|area|continent|island|province|county|nation|village|"
            r"street|district))\b",
            re.I,
        ),
        PLACE,
    ),
    (
        re.compile(
            r"\b(?:who|whom|whose|what\s+(?:person|man|woman|company|organi[sz]ation|group|team|"
            r"king|queen|president|scientist)|which\s+(?:person|man|woman|company|organi[sz]ation|"
            r"group|team|king|queen|president|scientist))\b",
            re.I,
        ),
        PERSON,
    ),
    (
        re.compile(
            r"\b(?:which|what)\s+(?!is\b|are\b|was\b|were\b|does\b|do\b|did\b|has\b|have\b|had\b|"
            r"can\b|could\b|will\b|would\b|should\b|kind\b|type\b|sort\b)[a-z]+",
            re.I,
        ),
        NAME,
    ),
    (re.compile(r"\b(?:name|called|named|title)\b", re.I), NAME),
]
_WHY_HOW = re.compile(r"^\W*(?:why|how)\b(?!\s+(?:many|much))", re.I)


def answer_type(question: str) -> str:
    """The kind of phrase ``question`` asks for: DATE, NUMBER, PERSON, PLACE, NAME or OTHER.

    Example: "How tall is the Kestrel Point Lighthouse?" -> NUMBER; "Why did prices rise?" -> OTHER.
    """
    for pattern, kind in _QTYPE:
        if pattern.search(question):
            return kind
    if _WHY_HOW.search(question):
        return OTHER
    return OTHER


@dataclass(frozen=True)
class Candidate:
    """A typed phrase ``text[start:end]`` of a passage."""

    start: int
    end: int
    kind: str  # DATE, NUMBER or NAME (names serve PERSON, PLACE and NAME questions)


def candidates(text: str, start: int = 0, end: int | None = None) -> list[Candidate]:
    """Typed phrases in ``text[start:end]`` (offsets into ``text``); where they overlap, dates
    win over names over numbers (a year is a date; "Super Bowl 50" is a name)."""
    end = len(text) if end is None else end
    piece = text[start:end]
    found: list[Candidate] = []
    taken = [False] * len(piece)

    def add(a: int, b: int, kind: str) -> None:
        if b > a and not any(taken[a:b]):
            for i in range(a, b):
                taken[i] = True
            found.append(Candidate(start + a, start + b, kind))

    for m in _DATE_RE.finditer(piece):
        add(m.start(), m.end(), DATE)
    titled = _title_case_lines(piece)
    for m in _NAME_RE.finditer(piece):
        a, b = m.start(), m.end()
        if any(lo <= a < hi for lo, hi in titled):
            continue  # "OpenAI Partners with Foxconn to Develop...": capitals name nothing here
        words = m.group(0).split()
        if (
            len(words) == 1
            and len(words[0].rstrip(".")) == 1
            and (piece[a - 1 : a] == "°" or piece[max(0, a - 2) : a] == "° ")
        ):
            continue  # the C of "12 °C" is the unit of a temperature, not a name
        # A lone capitalised common word at a sentence start names nothing ("The", "However").
        if words[0].lower().strip(".,") in COMMON_WORDS:
            if len(words) == 1:
                continue
            a = m.start() + len(m.group(0)) - len(m.group(0)[len(words[0]) :].lstrip())
        possessive = _POSSESSIVE.search(piece, a, b)
        if possessive is not None:  # "Victoria's Mount Bogong": the name is Victoria
            b = possessive.start()
        tail = _STOP_NAME_TAIL.search(piece, a, b)
        if tail is not None:
            b = tail.start()
        while b > a and piece[b - 1] in ".,'’":
            b -= 1
        add(a, b, "name")
    # after names: "CMO V-17" and "Super Bowl 50" are names, not numbers
    for m in _NUMBER_RE.finditer(piece):
        add(m.start(), m.end(), NUMBER)
    found.sort(key=lambda c: c.start)
    return found


_LINE = re.compile(r"[^\n]+")
_POSSESSIVE = re.compile(r"['’]s\b")
_SMALL_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "vs",
        "via",
    ]
)


def _title_case_lines(text: str) -> list[tuple[int, int]]:
    """Spans of the lines written in Title Case (headlines): four or more words, and all but
    the small ones ("with", "to", "the") capitalised. Capitals there say nothing about names."""
    spans = []
    for m in _LINE.finditer(text):
        words = [w for w in m.group(0).split() if w[:1].isalpha()]
        big = [w for w in words if w.lower() not in _SMALL_WORDS]
        if len(words) >= 4 and big and sum(w[0].isupper() for w in big) >= 0.9 * len(big):
            spans.append((m.start(), m.end()))
    return spans


_MEASURE = re.compile(
    r"\b(?:how\s+(?:far|tall|high|long|deep|wide|heavy|fast|hot|cold|warm|large|big)|"
    r"what\s+(?:length|height|distance|speed|temperature|size|depth|width|weight)|"
    r"at\s+what\s+(?:speed|temperature))\b",
    re.I,
)
_BARE = re.compile(
    r"(?:\d|[\s,.\-]|\b" + _NUMWORD + r"\b|\b" + _ORDWORD + r"\b|(?<=\d)(?:st|nd|rd|th)\b|\bbn\b)*", re.I
)


_TEMPERATURE_WORDS = frozenset(
    ["temperature", "temperatures", "hot", "hotter", "cold", "colder", "warm", "warmer"]
)
_DEGREES = re.compile(r"°|\bdegrees?\b|\bkelvin\b", re.IGNORECASE)


def measure_question(question: str) -> bool:
    """Whether ``question`` asks for a measure ("How far...?", "What temperature...?"), which a
    quantity with its unit answers ("150 metres", "12 °C"), not a bare "two"."""
    return _MEASURE.search(question) is not None


def fits(text: str, c: Candidate, wanted: str, question_words: set[str], measure: bool) -> bool:
    """Whether candidate ``c`` of ``text`` can answer a question that asks for ``wanted``: of a
    kind that serves it, not only the question's own words, and, for a ``measure`` question, a
    number that carries its unit (in degrees when ``question_words`` ask for a temperature)."""
    if not serves(c.kind, wanted) or words_of(text[c.start : c.end]) <= question_words:
        return False
    if not measure or c.kind != NUMBER:
        return True
    said = text[c.start : c.end]
    if _BARE.fullmatch(said) is not None:
        return False
    # a temperature is in degrees: "95 per cent" of "12 °C and 95 per cent" does not answer it
    return question_words.isdisjoint(_TEMPERATURE_WORDS) or _DEGREES.search(said) is not None


def serves(kind: str, wanted: str) -> bool:
    """Whether a candidate of ``kind`` can answer a question of type ``wanted``."""
    if wanted in (PERSON, PLACE, NAME):
        return kind == "name"
    return kind == wanted


_WORD = re.compile(r"\w+")
_PLACE_BEFORE = re.compile(
    r"\b(?:in|at|near|from|to|into|across|throughout|outside|inside|around|of)\s+(?:the\s+)?$", re.IGNORECASE
)
_ALIAS = re.compile(
    r"\s*(?:,\s*)?(?:\(|(?:better |also |commonly |popularly |now |formerly )?known as |or simply )"
)


def words_of(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


# Plurals that do not end in -s.
_IRREGULAR = {
    "children": "child",
    "people": "person",
    "men": "man",
    "women": "woman",
    "feet": "foot",
    "teeth": "tooth",
    "mice": "mouse",
    "geese": "goose",
}


def _singular(word: str) -> str:
    """``word`` lower-cased, an irregular plural made singular ("children" -> "child")."""
    w = word.lower()
    return _IRREGULAR.get(w, w)


def pick(
    text: str,
    window: tuple[int, int],
    focus: tuple[int, int],
    wanted: str,
    question: str,
) -> Candidate | None:
    """The phrase of type ``wanted`` in ``text[window]`` nearest to the question's words.

    ``focus`` is the best sentence inside the window: candidates in it are preferred.
    Candidates made only of the question's own words are skipped (they restate it).
    Returns None for OTHER questions or when no candidate of the type is present.
    """
    if wanted == OTHER:
        return None
    q_words = words_of(question)
    a, b = window
    measure = measure_question(question)
    cands = [c for c in candidates(text, a, b) if fits(text, c, wanted, q_words, False)]
    if measure and any(fits(text, c, wanted, q_words, True) for c in cands):
        cands = [c for c in cands if fits(text, c, wanted, q_words, True)]  # "150 metres", not "two"
    if not cands:
        return None
    # Positions of the question's words in the window, to measure nearness ("children" also
    # finds "child": a plural the question's words cannot show by their spelling).
    asked = {_singular(w) for w in q_words if len(w) > 2 and w not in COMMON_WORDS}
    anchors = [
        m.start()  # finditer's positions are the text's own, not relative to ``a``
        for m in _WORD.finditer(text, a, b)
        if len(m.group(0)) > 2 and m.group(0).lower() not in COMMON_WORDS and _singular(m.group(0)) in asked
    ]

    def cost(c: Candidate) -> tuple[int, int, int, int]:
        outside = 0 if focus[0] <= c.start and c.end <= focus[1] else 1
        # a place follows "in", "at", "near"...; a person or organisation does not
        placed = _PLACE_BEFORE.search(text, max(a, c.start - 12), c.start) is not None
        context = int(placed != (wanted == PLACE)) if wanted in (PLACE, PERSON) else 0
        dist = min((abs(c.start - p) for p in anchors), default=len(text))
        return (outside, context, dist, c.start)

    chosen = min(cands, key=cost)
    # "Hon Hai Precision Industry Company, better known as Foxconn": the name people use.
    alias = _ALIAS.match(text, chosen.end)
    if alias is not None:
        later = next((c for c in cands if c.start == alias.end() and c.kind == chosen.kind), None)
        if later is not None:
            return later
    return chosen
