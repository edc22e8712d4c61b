"""The PII gate's patron names: digests that answer as a set of the names would, read
from the source a batch at a time, in memory far below the names themselves.

* a property: for any strings, ``Digests`` says "in" exactly for the strings added;
* a property: deduplicating a sorted array in place, a step at a time, gives NumPy's
  ``unique`` for any values and any step; and freezing a million digests takes little
  memory beyond the digests themselves (it took twice them);
* a property: for any rows of names (letters, digits, spaces, hyphens, apostrophes,
  empty and missing parts), a batch read holds exactly the phrases and words the
  plain rules give, whatever the batches' sizes;
* a Koha of 200,000 patrons: the names the gate reads match what a set of the strings
  would hold (phrases in three orders, single words, words of the code lists set
  aside), and the peak Python allocation of reading them is a fraction of what the
  phrases alone take as strings (the gate used to hold every row and every phrase).
"""

from __future__ import annotations

import json
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from patron_privacy import connections
from patron_privacy.release import pii_gate
from sqlalchemy import text

PATRONS = 200_000


@settings(max_examples=200, deadline=None)
@given(
    added=st.lists(st.text(max_size=12), max_size=40),
    probes=st.lists(st.text(max_size=12), max_size=40),
)
def test_digests_answer_as_the_set_of_strings_does(added, probes):
    d = pii_gate.Digests()
    for i, s in enumerate(added):
        d.update([s])
        if i % 7 == 3:  # look-ups between additions as well as after them
            assert s in d
    for s in [*added, *probes]:
        assert (s in d) == (s in set(added)), s
    assert len(d) == len(set(added))
    bulk = pii_gate.Digests()
    bulk.update(added)
    assert len(bulk) == len(set(added)) and all(s in bulk for s in added)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=60),
    repeat=st.integers(min_value=1, max_value=3),
    step=st.integers(min_value=1, max_value=70),
)
def test_deduplicating_in_place_gives_the_distinct_values(values, repeat, step):
    a = np.sort(np.array(values * repeat, dtype=np.int64))
    got = pii_gate.unique_sorted(a.copy(), step)
    assert got.tolist() == np.unique(a).tolist()


def test_freezing_a_million_digests_takes_little_beyond_them():
    d = pii_gate.Digests()
    d.update(f"patron {i % 900_000}" for i in range(1_000_000))  # some names twice
    tracemalloc.start()
    try:
        assert len(d) == 900_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    digests = 1_000_000 * 8
    assert peak < digests * 0.25, f"peak {peak / 2**20:.1f} MiB for {digests / 2**20:.1f} MiB"
    assert "patron 12345" in d and "patron 900000" not in d


_PART = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from("abAB éz 1-'’\t_"), max_size=10),
    st.sampled_from(["May", "young", "O'Neil", "Smith-Jones", "van  der Berg", "Zoë", "x2"]),
)


def _plain(rows, vocabulary):
    """The rules as first written, a set of strings per patron: the model to match."""
    phrases, singles, patrons, ignored = set(), set(), 0, 0
    for row in rows:
        s, f = map(pii_gate._norm, row)
        patrons += bool(s or f)
        if s and f:
            phrases |= {f"{f} {s}", f"{s} {f}", f"{s}, {f}"}
        words = [w for w in pii_gate._WORD.findall(f"{s} {f}") if len(w) >= 2]
        ignored += sum(w in vocabulary for w in words)
        singles |= {w for w in words if w not in vocabulary}
    return phrases, singles, patrons, ignored


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(_PART, _PART), max_size=30),
    cut=st.integers(min_value=1, max_value=31),
    probes=st.lists(st.text(alphabet="abAB 1-',", max_size=8), max_size=10),
)
def test_names_read_in_batches_hold_exactly_the_plain_rules_names(rows, cut, probes):
    vocabulary = {"may", "young", "ab"}
    names = pii_gate.Names()
    for i in range(0, len(rows), cut):
        names.add_rows(rows[i : i + cut], vocabulary)
    phrases, singles, patrons, ignored = _plain(rows, vocabulary)
    assert (names.patrons, names.ignored_singles) == (patrons, ignored)
    assert len(names.phrases) == len(phrases) and len(names.singles) == len(singles)
    for p in [*phrases, *probes]:
        assert (p in names.phrases) == (p in phrases), p
    for w in [*singles, *vocabulary, *probes]:
        assert (w in names.singles) == (w in singles), w


@pytest.fixture
def koha_names(home, tmp_path, monkeypatch):
    """A Koha with ``PATRONS`` borrowers (and a branch whose name is a patron's surname)."""
    path = tmp_path / "koha.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_KOHA_DB", json.dumps({"conn_type": "sqlite", "host": str(path)})
    )
    engine = connections.engine_for(connections.KOHA_DB)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE borrowers (surname TEXT, firstname TEXT)"))
        c.execute(text("CREATE TABLE branches (branchcode TEXT, branchname TEXT)"))
        c.execute(text("INSERT INTO branches VALUES ('MAIN', 'Harbor Branch')"))
        c.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :k) "
                "INSERT INTO borrowers SELECT "
                "CASE WHEN i % 1000 = 0 THEN 'Harbor' ELSE 'Sur' || char("
                "97 + i % 26, 97 + (i / 26) % 26, 97 + (i / 676) % 26) || 'son' END, "
                "'Fi' || char(97 + i % 23, 97 + (i / 23) % 23, 97 + (i / 529) % 23) "
                "FROM n"
            ),
            {"k": PATRONS},
        )
    with engine.connect() as c:
        rows = [tuple(r) for r in c.execute(text("SELECT surname, firstname FROM borrowers"))]
    engine.dispose()
    return rows


def test_names_read_from_koha_are_the_set_of_names_in_a_fraction_of_its_memory(koha_names):
    rows = koha_names
    pii_gate.read_names(set())  # warm up: first-use imports and caches are not the names'
    tracemalloc.start()
    try:
        names, codes, read = pii_gate.read_names({"month"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert read == ["koha_db"] and "harbor" in codes
    phrases, singles, ignored = set(), set(), 0
    for s, f in rows:
        s, f = s.lower(), f.lower()
        phrases |= {f"{f} {s}", f"{s} {f}", f"{s}, {f}"}
        for w in (s, f):
            if w in codes or w == "month":
                ignored += 1
            else:
                singles.add(w)
    assert names.patrons == PATRONS
    assert len(names.phrases) == len(phrases) and len(names.singles) == len(singles)
    assert names.ignored_singles == ignored == PATRONS // 1000
    s, f = (w.lower() for w in rows[12_345])
    assert f"{f} {s}" in names.phrases and f"{s}, {f}" in names.phrases
    assert f"{f}, {s}" not in names.phrases  # "First, Last" was never a name's form
    assert s in names.singles and "harbor" not in names.singles

    as_strings = sum(sys.getsizeof(p) for p in phrases)
    assert peak < as_strings * 0.25, (
        f"peak {peak / 2**20:.1f} MiB, phrases {as_strings / 2**20:.1f} MiB"
    )
