"""The PII gate: nothing is published until every output has been scanned clean.

Presidio's analyzer runs offline (the ``no_op`` NLP engine: no spaCy model)
with pattern and list recognizers:

* ``EMAIL_ADDRESS`` (Presidio's, with the top-level-domain check done on the
  public-suffix snapshot that ships with tldextract, never fetched);
* ``PHONE_NUMBER`` (Presidio's, on libphonenumber);
* ``CARD_NUMBER``: a run of exactly 14 digits (Koha card and item barcodes);
* ``PATRON_NAME``: the names of the library's patrons, read during the run from
  every system of the library that holds them (Koha ``borrowers``, Evergreen
  ``actor.usr`` with preferred names, Libki ``users``), streamed and held in
  memory only, as digests (``Digests``), never written. A full name ("First
  Last", "Last, First", "Last First") matches anywhere; a single surname or
  first name matches as a whole word unless it is an ordinary word of the
  release itself (its headings, definitions, month names) or of the library's
  own code lists (branch, item type, category names), which would otherwise
  block every release of a library with a patron named "Young" or "May".

Every output is scanned piece by piece — each CSV and Parquet cell, each
string of the manifest, each text node and attribute of the HTML, each text
string of the PDF's content streams, each text chunk of a PNG — so numbers
from neighbouring cells are never read together as a phone number.

The ILS (Koha or Evergreen) must be one of them. A system the library has (its
connection is defined) that cannot be read fails the gate closed: nothing is
published. A system it does not have is skipped, and the manifest lists the
systems the names came from. Findings are reported as counts per kind and file, never values.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from patron_privacy import connections

log = logging.getLogger("patron_privacy.release")

ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CARD_NUMBER", "PATRON_NAME")
MIN_SCORE = 0.4
NAMES_BATCH = 10_000
# Rows handed to ``Names.add_rows`` at once: a tenth of a fetch, so the batch's phrases
# and words stay a small part of the gate's memory.
NAMES_CHUNK = 1_000
_COUNT = re.compile(r"\d{1,3}(?:,\d{3})*|\d+")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", re.UNICODE)


class PiiGateUnavailable(RuntimeError):
    """The gate could not run (names unreadable): fail closed, publish nothing."""


class PiiFound(RuntimeError):
    """Personal data found in an output: the release is blocked."""

    def __init__(self, counts: dict[str, int], files: dict[str, int]):
        self.counts = counts
        self.files = files
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        where = ", ".join(sorted(files))
        super().__init__(
            f"PII gate blocked the release: {sum(counts.values())} finding(s) ({kinds}) in "
            f"{len(files)} file(s) ({where}); nothing was published"
        )


class Digests:
    """A set of strings held as sorted 8-byte digests, not as the strings.

    A million patrons give three million full-name phrases: as Python strings in a
    set that is some 360 MB, as digests 24 MB. The digest is the interpreter's own
    string hash (64-bit SipHash under a key drawn at start-up): it is computed in C
    and cached on the string, some ten times cheaper than a digest built per name,
    and the names are read afresh in the one process that checks against them, so
    the key never has to outlive it. A collision (a release's few thousand words
    against millions of names: about one release in a billion) can only block a
    release, never let a name through.
    """

    def __init__(self) -> None:
        self._pending = array("q")
        self._sorted = np.empty(0, dtype=np.int64)

    def update(self, texts: Iterable[str]) -> None:
        self._pending.extend(map(hash, texts))

    def _frozen(self) -> np.ndarray:
        if len(self._pending):
            pending = np.frombuffer(self._pending, dtype=np.int64)
            # The first freeze (the gate's only one) sorts the digests where they lie;
            # a later one merges into a new array.
            merged = np.concatenate([self._sorted, pending]) if len(self._sorted) else pending
            self._pending = array("q")
            # Sorted and deduplicated in place: ``np.unique`` (NumPy 2) hashes, which
            # took 180 MB for three million digests; a mask and a copy took twice the
            # digests, the publish task's peak (51 MB a million patrons).
            merged.sort()
            self._sorted = unique_sorted(merged)
        return self._sorted

    def __contains__(self, text: str) -> bool:
        values = self._frozen()
        d = hash(text)
        i = int(np.searchsorted(values, d))
        return i < len(values) and int(values[i]) == d

    def __len__(self) -> int:
        return len(self._frozen())


def unique_sorted(values: np.ndarray, step: int = 1 << 16) -> np.ndarray:
    """The distinct values of sorted ``values``, written over its front (a view of it).

    A ``step`` of values is copied at a time, so the extra memory is a step's, not
    a second array as large as ``values``.
    """
    if not len(values):
        return values
    out, last = 1, values[0]
    for lo in range(1, len(values), step):
        chunk = values[lo : lo + step].copy()  # before anything is written over it
        keep = np.empty(len(chunk), dtype=bool)
        keep[0] = chunk[0] != last
        np.not_equal(chunk[1:], chunk[:-1], out=keep[1:])
        last = chunk[-1]
        kept = chunk[keep]
        values[out : out + len(kept)] = kept
        out += len(kept)
    return values[:out]


@dataclass
class Names:
    """Patron names for one run: full-name phrases and single names, lower-cased,
    kept as digests (``Digests``) so the gate's memory stays small at any size."""

    phrases: Digests = field(default_factory=Digests)
    singles: Digests = field(default_factory=Digests)
    patrons: int = 0
    ignored_singles: int = 0

    def add_rows(self, rows: Iterable[tuple[str | None, str | None]], vocabulary: set[str]) -> None:
        """Add a batch of (surname, firstname) rows.

        A batch at a time because this loop runs once per patron of the library: a
        million rows at some microseconds each is most of the gate's time. A batch's
        single names are gathered in a set first (a surname is shared by many
        patrons), and a name made only of letters is its own one word, so the word
        pattern runs only on the few with spaces, hyphens, apostrophes or digits.
        """
        phrases: list[str] = []
        singles: set[str] = set()
        patrons = ignored = 0
        find = _WORD.findall
        for surname, firstname in rows:
            s, f = _norm(surname), _norm(firstname)
            if not s and not f:
                continue
            patrons += 1
            if s and f:
                phrases += (f"{f} {s}", f"{s} {f}", f"{s}, {f}")
            for part in (s, f):
                if not part:
                    continue
                for w in (part,) if part.isalpha() else find(part):
                    if len(w) < 2:
                        continue
                    if w in vocabulary:
                        ignored += 1
                    else:
                        singles.add(w)
        self.phrases.update(phrases)
        self.singles.update(singles)
        self.patrons += patrons
        self.ignored_singles += ignored


def _norm(text: str | None) -> str:
    return " ".join(str(text).lower().split()) if text else ""


@dataclass(frozen=True)
class NameSource:
    """Where one system keeps patron names, and the code lists whose words are not names."""

    conn_id: str
    names_sql: str
    code_sql: tuple[str, ...] = ()
    ils: bool = False


NAME_SOURCES = (
    NameSource(
        connections.KOHA_DB,
        "SELECT surname, firstname FROM borrowers",
        (
            "SELECT branchcode, branchname FROM branches",
            "SELECT itemtype, description FROM itemtypes",
            "SELECT categorycode, description FROM categories",
        ),
        ils=True,
    ),
    NameSource(
        connections.EVERGREEN_DB,
        "SELECT family_name, first_given_name FROM actor.usr UNION ALL "
        "SELECT pref_family_name, pref_first_given_name FROM actor.usr "
        "WHERE pref_family_name IS NOT NULL OR pref_first_given_name IS NOT NULL",
        (
            "SELECT shortname, name FROM actor.org_unit",
            "SELECT name, description FROM permission.grp_tree",
        ),
        ils=True,
    ),
    NameSource(connections.LIBKI_DB, "SELECT lastname, firstname FROM users"),
)


@contextmanager
def _reading(src: NameSource) -> Iterator:
    """A connection to one system's names; any failure to read them closes the gate."""
    engine = None
    try:
        engine = connections.engine_for(src.conn_id)
        with engine.connect() as c:
            yield c
    except Exception as exc:  # noqa: BLE001 - any failure to read names closes the gate
        raise PiiGateUnavailable(
            f"PII gate: patron names could not be read from {src.conn_id} "
            f"({type(exc).__name__}); failing closed, nothing was published"
        ) from None
    finally:
        if engine is not None:
            engine.dispose()


def _code_words(c, src: NameSource) -> set[str]:
    from sqlalchemy import text  # noqa: PLC0415

    codes: set[str] = set()
    for sql in src.code_sql:
        try:
            for row in c.execute(text(sql)):
                for v in row:
                    codes.update(_WORD.findall(_norm(v)))
        except Exception:  # noqa: BLE001 - a missing code list only narrows the allow-list
            c.rollback()
    return codes


def read_names(
    vocabulary: set[str], sources: Iterable[NameSource] = NAME_SOURCES
) -> tuple[Names, set[str], list[str]]:
    """Names and code-list words from every system the library has; fails closed.

    Every system's code lists are read before any name, since a code-list word of
    one system is not a name in another. Returns the names, the code-list words and
    the connection ids read.
    """
    from sqlalchemy import text  # noqa: PLC0415

    sources = list(sources)
    present = [s for s in sources if connections.is_defined(s.conn_id)]
    codes: set[str] = set()
    for src in present:
        with _reading(src) as c:
            codes |= _code_words(c, src)
    ils = [s.conn_id for s in sources if s.ils]
    if not {s.conn_id for s in present} & set(ils):
        raise PiiGateUnavailable(
            f"PII gate: no ILS to read patron names from (none of {', '.join(ils)} is "
            "defined); failing closed, nothing was published"
        )
    names = Names()
    words = vocabulary | codes
    for src in present:
        with _reading(src) as c:
            # Streamed, NAMES_BATCH rows a fetch: never all of a system's rows at once.
            rows = c.execution_options(stream_results=True, yield_per=NAMES_BATCH).execute(
                text(src.names_sql)
            )
            for batch in rows.partitions(NAMES_CHUNK):
                names.add_rows(batch, words)
    return names, codes, [s.conn_id for s in present]


def _analyzer(names: Names):
    import tldextract  # noqa: PLC0415
    from presidio_analyzer import (  # noqa: PLC0415
        AnalyzerEngine,
        EntityRecognizer,
        Pattern,
        PatternRecognizer,
        RecognizerRegistry,
        RecognizerResult,
    )
    from presidio_analyzer.nlp_engine import NlpEngineProvider  # noqa: PLC0415
    from presidio_analyzer.predefined_recognizers import (  # noqa: PLC0415
        EmailRecognizer,
        PhoneRecognizer,
    )

    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str):
            return offline(pattern_text).fqdn != ""

    class PatronNameRecognizer(EntityRecognizer):
        """Whole-word look-ups in a set: linear in the text, whatever the number of patrons."""

        def __init__(self):
            super().__init__(supported_entities=["PATRON_NAME"], name="PatronNameRecognizer")

        def load(self) -> None:  # nothing to load
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            out = []
            lowered = text.lower()
            words = list(_WORD.finditer(lowered))
            for i, m in enumerate(words):
                if m.group(0) in names.singles:
                    out.append(RecognizerResult("PATRON_NAME", m.start(), m.end(), 1.0))
                if i + 1 < len(words):
                    nxt = words[i + 1]
                    between = lowered[m.end() : nxt.start()]
                    if between in (" ", ", ") and (
                        f"{m.group(0)}{between}{nxt.group(0)}" in names.phrases
                    ):
                        out.append(RecognizerResult("PATRON_NAME", m.start(), nxt.end(), 1.0))
            return out

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "no_op"}],
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(OfflineEmailRecognizer())
    registry.add_recognizer(PhoneRecognizer())
    registry.add_recognizer(
        PatternRecognizer(
            supported_entity="CARD_NUMBER",
            name="CardNumber14Recognizer",
            patterns=[Pattern("14 digits", r"(?<!\d)\d{14}(?!\d)", 0.9)],
        )
    )
    registry.add_recognizer(PatronNameRecognizer())
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


# -- pieces of text per kind of file ------------------------------------------------------------


class _HtmlText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []

    def handle_starttag(self, tag, attrs):
        for _, v in attrs:
            if v and not v.startswith("data:"):
                self.pieces.append(v)

    def handle_data(self, data):
        if data.strip():
            self.pieces.append(data.strip())


def _pdf_strings(data: bytes) -> Iterator[str]:
    """Text strings of a PDF's content streams (inflated), and its metadata strings."""
    stream = re.compile(rb"obj\s*<<((?:(?!endobj).)*?)>>\s*stream\r?\n(.*?)\r?\nendstream", re.S)
    # The writer's own timestamps (D:YYYYMMDDHHmmSS) are not data and look like card numbers.
    data = re.sub(rb"/(CreationDate|ModDate)\s*\(D:[0-9+\-Z']*\)", b"", data)
    chunks = [stream.sub(b"obj ", data)]  # the document's own strings (title, author, ...)
    for m in stream.finditer(data):
        head, body = m.group(1), m.group(2)
        if b"/Image" in head:
            continue  # pixels, not text
        if b"/FlateDecode" in head:
            try:
                body = zlib.decompress(body)
            except zlib.error:
                pass
        chunks.append(body)
    lit = re.compile(rb"\((?:\\.|[^\\)])*\)", re.S)
    for chunk in chunks:
        for s in lit.findall(chunk):
            raw = s[1:-1]
            raw = re.sub(
                rb"\\([nrtbf()\\])",
                lambda x: {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}.get(
                    x.group(1), x.group(1)
                ),
                raw,
            )
            raw = re.sub(rb"\\([0-7]{1,3})", lambda x: bytes([int(x.group(1), 8) & 255]), raw)
            text = raw.decode("latin-1")
            if text.strip():
                yield text


def _png_strings(data: bytes) -> Iterator[str]:
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            if kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                body = key + b" " + zlib.decompress(rest[1:])
            yield body.replace(b"\0", b" ").decode("latin-1")
        pos += 12 + length


def _json_strings(value) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_strings(v)
    elif value is not None:
        yield str(value)


def pieces_of(path: Path) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import csv  # noqa: PLC0415

        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                yield from row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        # ParquetFile, not read_table: read_table goes through pyarrow.dataset, which
        # imports pandas, and the gate's own process has no other use for it.
        t = pq.ParquetFile(path).read()
        yield from t.column_names
        for col in t.columns:
            for v in col.to_pylist():
                if v is not None:
                    yield str(v)
        meta = t.schema.metadata or {}
        for k, v in meta.items():
            yield k.decode("utf-8", "replace")
            yield v.decode("utf-8", "replace")
    elif suffix == ".json":
        yield from _json_strings(json.loads(path.read_text(encoding="utf-8")))
    elif suffix in (".html", ".htm"):
        p = _HtmlText()
        p.feed(path.read_text(encoding="utf-8"))
        yield from p.pieces
    elif suffix == ".pdf":
        yield from _pdf_strings(path.read_bytes())
    elif suffix == ".png":
        yield from _png_strings(path.read_bytes())
    else:
        yield path.read_bytes().decode("utf-8", "replace")


@dataclass
class GateResult:
    passed: bool
    files_scanned: int
    pieces_scanned: int
    findings: dict[str, int]
    files_with_findings: dict[str, int]
    patrons: int
    names_not_checked_alone: int
    name_sources: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "engine": "presidio-analyzer 2.2.366, no_op NLP engine (offline), pattern and "
            "list recognizers",
            "entities": list(ENTITIES),
            "files_scanned": self.files_scanned,
            "text_pieces_scanned": self.pieces_scanned,
            "findings": self.findings,
            "patron_names_checked": self.patrons,
            "patron_names_from": self.name_sources,
            "single_names_not_checked_alone": self.names_not_checked_alone,
        }


class PiiGate:
    def __init__(self, names: Names, name_sources: list[str] | None = None):
        self.names = names
        self.name_sources = list(name_sources or [])
        self._analyzer = _analyzer(names)

    @classmethod
    def from_sources(cls, vocabulary: set[str]) -> PiiGate:
        names, _, read = read_names({w.lower() for w in vocabulary})
        return cls(names, read)

    def scan_texts(self, texts: Iterable[str]) -> Counter:
        found: Counter = Counter()
        seen: set[str] = set()
        for t in texts:
            if t in seen or not t.strip():
                continue
            seen.add(t)
            entities = list(ENTITIES)
            if _COUNT.fullmatch(t.strip()) and len(re.sub(r"\D", "", t)) <= 9:
                # A count (up to 999,999,999) is not a phone number: seven- and eight-digit
                # totals of a large library would otherwise read as German or Israeli numbers.
                entities.remove("PHONE_NUMBER")
            for r in self._analyzer.analyze(t, language="en", entities=entities):
                if r.score >= MIN_SCORE:
                    found[r.entity_type] += 1
        return found

    def scan(self, root: Path) -> GateResult:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        findings: Counter = Counter()
        per_file: dict[str, int] = {}
        pieces = 0
        for f in files:
            texts = list(pieces_of(f))
            pieces += len(texts)
            hits = self.scan_texts(texts)
            if hits:
                per_file[str(f.relative_to(root))] = sum(hits.values())
                findings.update(hits)
        return GateResult(
            passed=not findings,
            files_scanned=len(files),
            pieces_scanned=pieces,
            findings=dict(findings),
            files_with_findings=per_file,
            patrons=self.names.patrons,
            names_not_checked_alone=self.names.ignored_singles,
            name_sources=self.name_sources,
        )


def alert(counts: dict[str, int], where: str) -> None:
    """Tell someone: the project's alert channel (``patron_privacy.alerts``) when it is
    there, and always a count-only error in the log."""
    import importlib  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    kinds = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    message = f"statistics release {where} blocked by the PII gate: {kinds}"
    log.error(message)
    if importlib.util.find_spec("patron_privacy.alerts") is None:
        return
    try:
        mod = importlib.import_module("patron_privacy.alerts")
        body = "\n".join(
            [
                "Source: statistics release",
                f"Release: {where}",
                f"Result: blocked by the PII gate; nothing was published. Findings: {kinds}.",
                "",
                "Where to look:",
                f"  - rerun: python -m patron_privacy publish --period/--year {where}",
                "  - the facts feeding the release (warehouse circulation_facts): a code or",
                "    label column holding personal data",
                "",
                getattr(mod, "FOOTER", "This alert carries counts only."),
            ]
        )
        prefix = getattr(mod, "PREFIX", "[patron-privacy]")
        outcome = mod.send(
            mod.Alert(
                "compliance",
                "statistics",
                where,
                f"{prefix} statistics release {where} blocked by the PII gate",
                body,
            )
        )
        for err in outcome.get("errors", []):
            log.warning("alert delivery: %s", err)
    except Exception:  # noqa: BLE001 - an alert channel failing must not hide the block
        log.warning("alert hook failed; the block is logged above", exc_info=False)
