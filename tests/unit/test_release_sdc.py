"""Cell suppression and its audit on hand-built tables whose right answer is known,
and property-based tests that the audit passes on everything the suppressor produces."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patron_privacy.release.sdc import CellKey, Relation, audit, protect

K = CellKey.of


def two_way(data: dict[tuple[str, str], int], measure: str = "n"):
    """A rows x cols table with row, column and grand totals, as cells and relations."""
    rows = sorted({r for r, _ in data})
    cols = sorted({c for _, c in data})
    values = {K(measure, row=r, col=c): v for (r, c), v in data.items()}
    rels = []
    for r in rows:
        values[K(measure, row=r)] = sum(data[(r, c)] for c in cols)
        rels.append(Relation.total(K(measure, row=r), [K(measure, row=r, col=c) for c in cols]))
    for c in cols:
        values[K(measure, col=c)] = sum(data[(r, c)] for r in rows)
        rels.append(Relation.total(K(measure, col=c), [K(measure, row=r, col=c) for r in rows]))
    values[K(measure)] = sum(data.values())
    rels.append(Relation.total(K(measure), [K(measure, row=r) for r in rows]))
    rels.append(Relation.total(K(measure), [K(measure, col=c) for c in cols]))
    return values, rels


def by_cell(result):
    return {c.cell: (c.low, c.high) for c in result.cells}


# -- the audit on hand-made suppression patterns -------------------------------------------------


def test_one_suppressed_cell_in_a_row_whose_total_is_shown_is_recovered_exactly():
    # The classic case: 3 + 20 + 30 = 53 with 53 shown: the 3 is 53 - 20 - 30.
    values = {K("n", col="a"): 3, K("n", col="b"): 20, K("n", col="c"): 30, K("n"): 53}
    rels = [Relation.total(K("n"), [K("n", col=c) for c in "abc"])]
    shown = {**values, K("n", col="a"): None}
    result = audit(shown, rels, threshold=5)
    assert not result.passed
    assert by_cell(result) == {K("n", col="a"): (3, 3)}
    assert result.failing[0].cell == K("n", col="a")


def test_two_suppressed_cells_in_a_row_are_bounded_by_their_sum():
    # 3 + 20 hidden, 53 shown, 30 shown: each hidden cell lies in [0, 23].
    values = {K("n", col="a"): 3, K("n", col="b"): 20, K("n", col="c"): 30, K("n"): 53}
    rels = [Relation.total(K("n"), [K("n", col=c) for c in "abc"])]
    shown = {**values, K("n", col="a"): None, K("n", col="b"): None}
    result = audit(shown, rels, threshold=5)
    assert result.passed
    assert by_cell(result) == {K("n", col="a"): (0, 23), K("n", col="b"): (0, 23)}


def test_a_hidden_pair_that_sums_to_less_than_the_suppressed_range_is_narrow():
    # 1 + 2 hidden with total 13 and 10 shown: each is in [0, 3], narrower than [1, 4].
    values = {K("n", col="a"): 1, K("n", col="b"): 2, K("n", col="c"): 10, K("n"): 13}
    rels = [Relation.total(K("n"), [K("n", col=c) for c in "abc"])]
    shown = {**values, K("n", col="a"): None, K("n", col="b"): None}
    result = audit(shown, rels, threshold=5)
    assert not result.passed
    assert by_cell(result)[K("n", col="a")] == (0, 3)


def test_the_classic_two_by_two_pattern_gives_the_textbook_intervals():
    data = {("r1", "a"): 3, ("r1", "b"): 20, ("r2", "a"): 15, ("r2", "b"): 25}
    values, rels = two_way(data)
    hidden = {K("n", row=r, col=c) for r in ("r1", "r2") for c in "ab"}
    shown = {k: (None if k in hidden else v) for k, v in values.items()}
    result = audit(shown, rels, threshold=5)
    # r1a = x, r1b = 23 - x, r2a = 18 - x, r2b = 22 + x, all >= 0: x in [0, 18].
    assert result.passed
    got = by_cell(result)
    assert got[K("n", row="r1", col="a")] == (0, 18)
    assert got[K("n", row="r1", col="b")] == (5, 23)
    assert got[K("n", row="r2", col="a")] == (0, 18)
    assert got[K("n", row="r2", col="b")] == (22, 40)


def test_a_small_count_shown_fails_the_audit():
    values = {K("n", col="a"): 3, K("n", col="b"): 20, K("n"): 23}
    rels = [Relation.total(K("n"), [K("n", col="a"), K("n", col="b")])]
    result = audit(values, rels, threshold=5)
    assert not result.passed
    assert any("below the threshold" in p for p in result.problems)


def test_a_distinct_total_narrows_a_hidden_branch_through_inequalities():
    # Distinct borrowers: total <= sum of branches. 100 in total, 97 shown at other
    # branches: the hidden branch holds at least 3 — too narrow, it could not be 1 or 2.
    b = [K("b", branch=x) for x in ("A", "B", "C")]
    values = {b[0]: 3, b[1]: 50, b[2]: 47, K("b"): 100}
    rels = [Relation.at_most_sum(K("b"), b)] + [Relation.at_most(x, K("b")) for x in b]
    shown = {**values, b[0]: None}
    result = audit(shown, rels, threshold=5)
    assert not result.passed
    low, high = by_cell(result)[b[0]]
    assert low == 3 and math.isinf(high) or high >= 100


# -- the suppressor on the same tables ------------------------------------------------------------


def test_the_suppressor_protects_the_classic_row_case():
    data = {
        ("r1", "a"): 3,
        ("r1", "b"): 20,
        ("r1", "c"): 30,
        ("r2", "a"): 15,
        ("r2", "b"): 25,
        ("r2", "c"): 8,
    }
    values, rels = two_way(data)
    p = protect(values, rels, threshold=5)
    assert p.audit.passed
    assert p.primary == {K("n", row="r1", col="a")}
    assert K("n", row="r1", col="a") in p.suppressed
    # Complements close the row and the column: at least one more in each.
    assert {K("n", row="r1", col=c) for c in "bc"} & p.suppressed
    assert {K("n", row="r2", col="a")} & p.suppressed
    # Totals stay shown: the complements are interior cells.
    assert not any(k.level < 2 for k in p.suppressed)
    assert by_cell(p.audit)[K("n", row="r1", col="a")][0] <= 1
    assert by_cell(p.audit)[K("n", row="r1", col="a")][1] >= 4


def test_the_strict_preset_hides_counts_up_to_ten_and_zero_shows():
    data = {
        ("r1", "a"): 0,
        ("r1", "b"): 10,
        ("r1", "c"): 40,
        ("r2", "a"): 11,
        ("r2", "b"): 30,
        ("r2", "c"): 50,
    }
    values, rels = two_way(data)
    p = protect(values, rels, threshold=11)
    assert p.audit.passed
    assert K("n", row="r1", col="b") in p.primary
    assert K("n", row="r1", col="a") not in p.primary  # zero is not a small count
    shown = p.shown(values)
    assert all(v is None or v == 0 or v >= 11 for v in shown.values())
    assert p.audit.required == (1, 10)


def test_a_table_with_nothing_small_suppresses_nothing():
    values, rels = two_way({("r1", "a"): 30, ("r1", "b"): 20, ("r2", "a"): 15, ("r2", "b"): 0})
    p = protect(values, rels, threshold=5)
    assert p.suppressed == set()
    assert p.audit.passed and p.audit.cells == []


def test_one_cell_shared_by_two_tables_is_protected_in_both():
    # Table 1: branch x category; table 2: branch x age. Their branch totals are one cell.
    v = {}
    rels = []
    t1 = {("A", "adult"): 40, ("A", "child"): 2, ("B", "adult"): 30, ("B", "child"): 20}
    t2 = {("A", "young"): 12, ("A", "old"): 30, ("B", "young"): 25, ("B", "old"): 25}
    for (b, c), n in t1.items():
        v[K("n", branch=b, cat=c)] = n
    for (b, a), n in t2.items():
        v[K("n", branch=b, age=a)] = n
    for b in "AB":
        v[K("n", branch=b)] = sum(n for (x, _), n in t1.items() if x == b)
        assert v[K("n", branch=b)] == sum(n for (x, _), n in t2.items() if x == b)
        rels.append(
            Relation.total(K("n", branch=b), [K("n", branch=b, cat=c) for c in ("adult", "child")])
        )
        rels.append(
            Relation.total(K("n", branch=b), [K("n", branch=b, age=a) for a in ("young", "old")])
        )
    p = protect(v, rels, threshold=5)
    assert p.audit.passed
    assert K("n", branch="A", cat="child") in p.suppressed


# -- properties: the audit passes on everything the suppressor produces -------------------------

small_counts = st.integers(min_value=0, max_value=30)


@st.composite
def tables(draw):
    nr = draw(st.integers(2, 4))
    nc = draw(st.integers(2, 4))
    nl = draw(st.integers(1, 3))
    data = {}
    for r, c, layer in itertools.product(range(nr), range(nc), range(nl)):
        # Skewed towards small counts, with zeros: the hard cases.
        data[(f"r{r}", f"c{c}", f"l{layer}")] = draw(st.one_of(st.integers(0, 4), small_counts))
    return data, draw(st.sampled_from([3, 5, 11]))


def three_way(data: dict[tuple[str, str, str], int]):
    """rows x cols x layers, with the margins a release publishes: (r,c), (r,l), (r), (c),
    (l) and the grand total, plus a distinct-count column tied by inequalities."""
    dims = ("row", "col", "layer")
    levels = [
        ("row", "col", "layer"),
        ("row", "col"),
        ("row", "layer"),
        ("row",),
        ("col",),
        ("layer",),
        (),
    ]
    domains = {d: sorted({k[i] for k in data}) for i, d in enumerate(dims)}
    values = {}
    for lv in levels:
        for combo in itertools.product(*(domains[d] for d in lv)):
            coords = dict(zip(lv, combo, strict=True))
            values[K("n", **coords)] = sum(
                n
                for key, n in data.items()
                if all(key[dims.index(d)] == v for d, v in coords.items())
            )
    rels = []
    level_set = {frozenset(lv) for lv in levels}
    for lv in levels:
        for combo in itertools.product(*(domains[d] for d in lv)):
            coords = dict(zip(lv, combo, strict=True))
            for d in dims:
                if d not in coords and frozenset((*lv, d)) in level_set:
                    parent = K("n", **coords)
                    rels.append(Relation.total(parent, [parent.with_(d, x) for x in domains[d]]))
    # A distinct count per row: at most the row's count, total at most the sum, at least each.
    for r in domains["row"]:
        values[K("d", row=r)] = (values[K("n", row=r)] + 1) // 2
        rels.append(Relation.at_most(K("d", row=r), K("n", row=r)))
        rels.append(Relation.at_most(K("d", row=r), K("d")))
    values[K("d")] = max(values[K("d", row=r)] for r in domains["row"])
    rels.append(Relation.at_most_sum(K("d"), [K("d", row=r) for r in domains["row"]]))
    rels.append(Relation.at_most(K("d"), K("n")))
    return values, rels


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_the_audit_passes_on_everything_the_suppressor_produces(case):
    data, threshold = case
    values, rels = three_way(data)
    p = protect(values, rels, threshold)
    # Every small count is hidden, nothing shown is altered, and the reader's view
    # (values shown, nothing else) passes an independent audit.
    assert all(k in p.suppressed for k, v in values.items() if 1 <= v < threshold)
    shown = p.shown(values)
    assert all(shown[k] == values[k] for k in values if k not in p.suppressed)
    fresh = audit(shown, rels, threshold)
    assert fresh.passed, [str(c.cell) for c in fresh.failing]
    for c in fresh.cells:
        # The true value is always inside its interval.
        assert c.low - 1e-6 <= values[c.cell] <= c.high + 1e-6


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from("abc"), st.sampled_from("xyz")),
        st.integers(0, 12),
        min_size=9,
        max_size=9,
    )
)
def test_audit_intervals_match_brute_force_on_small_tables(data):
    """On a 3x3 table the LP interval of each hidden cell equals the range over every
    integer table that agrees with what is shown (total unimodularity)."""
    values, rels = two_way(data)
    p = protect(values, rels, threshold=5)
    shown = p.shown(values)
    hidden = sorted(k for k in p.suppressed if k.level == 2)
    if not hidden or len(hidden) > 4 or any(k.level < 2 for k in p.suppressed):
        return
    cap = max(v for k, v in values.items() if k.level == 1)  # a hidden cell <= its row total
    ranges: dict = {k: [math.inf, -math.inf] for k in hidden}
    for combo in itertools.product(range(cap + 1), repeat=len(hidden)):
        trial = {**shown, **dict(zip(hidden, combo, strict=True))}
        if all(r.holds(trial) for r in rels):
            for k, x in zip(hidden, combo, strict=True):
                ranges[k][0] = min(ranges[k][0], x)
                ranges[k][1] = max(ranges[k][1], x)
    got = by_cell(p.audit)
    for k in hidden:
        assert got[k][0] == pytest.approx(ranges[k][0])
        assert got[k][1] == pytest.approx(ranges[k][1])
