"""Properties of the file connectors, over generated folders of exports and logs:

* never touch a file or line inside its window (a file with nothing eligible keeps
  its bytes and its inode; a line inside every window keeps its bytes);
* always handle every eligible one (past the strip window: nothing identifying is
  left; past the delete window: gone; a file with nothing left: deleted);
* verification agrees: nothing remains.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from file_source_builders import (
    AS_OF,
    SIGNUP_HEADER,
    file_home,
    make_policy,
    read_log,
    signup_row,
    squid_line,
    write_csv,
    write_log,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patron_privacy.files import runner
from patron_privacy.files.atomic import FileStamp

H = timedelta(hours=1)
STRIP_CUT = AS_OF - timedelta(days=1)
CSV_DELETE_CUT = AS_OF - timedelta(days=90)
LOG_DELETE_CUT = AS_OF - timedelta(days=30)
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Hours before (negative) or after the as-of instant, with the cutoffs themselves likely.
hours = st.one_of(
    st.integers(min_value=-130 * 24, max_value=48),
    st.sampled_from([-24, -25, -23, -90 * 24, -90 * 24 - 1, -90 * 24 + 1, -30 * 24, -30 * 24 - 1]),
)
csv_row = st.tuples(hours, st.booleans())  # (end offset, has card and name)
csv_files = st.lists(st.lists(csv_row, min_size=1, max_size=6), min_size=1, max_size=4)


@SETTINGS
@given(files=csv_files)
def test_csv_exports_inside_their_window_untouched_every_eligible_row_handled(files):
    with tempfile.TemporaryDirectory() as tmp, file_home(Path(tmp) / "home"):
        root = Path(tmp) / "src"
        policy = make_policy(root)
        originals, rid = {}, 0
        for i, rows in enumerate(files):
            data = []
            for offset, named in rows:
                rid += 1
                end = AS_OF + offset * H
                card, name = (f"2999{rid:06d}", f"Person {rid}") if named else ("", "")
                data.append(signup_row(rid, card, name, end, minutes=10))
                originals[str(rid)] = (i, end, card, name)
            write_csv(root / "signups" / f"f{i}.csv", SIGNUP_HEADER, data)
        before = {p.name: (p.read_bytes(), FileStamp.of(p)) for p in (root / "signups").iterdir()}

        results = runner.run_folder("signups", AS_OF, "prop", dry_run=False, policy=policy)
        assert all(r["remaining"] == 0 and r["data_errors"] == 0 for r in results), results

        for i in range(len(files)):
            path = root / "signups" / f"f{i}.csv"
            mine = {k: v for k, v in originals.items() if v[0] == i}
            eligible = [
                v for v in mine.values()
                if v[1] < CSV_DELETE_CUT or (v[1] < STRIP_CUT and v[2])
            ]  # fmt: skip
            if all(v[1] < CSV_DELETE_CUT for v in mine.values()):
                assert not path.exists()
                continue
            if not eligible:
                assert (path.read_bytes(), FileStamp.of(path)) == before[path.name]
                continue
            lines = path.read_text().splitlines()
            head = lines[0].split(",")
            got = {cells[0]: dict(zip(head, cells, strict=True)) for cells in
                   (ln.split(",") for ln in lines[1:])}  # fmt: skip
            for key, (_, end, card, name) in mine.items():
                if end < CSV_DELETE_CUT:
                    assert key not in got
                    continue
                row = got[key]
                if end < STRIP_CUT:
                    assert row.get("Card Number", "") == "" and row.get("Patron Name", "") == ""
                else:
                    got_id = (row.get("Card Number", ""), row.get("Patron Name", ""))
                    assert got_id == (card, name)  # a column empty everywhere may be dropped


log_line = st.tuples(
    st.one_of(
        st.integers(min_value=-45 * 24 * 60, max_value=24 * 60),
        st.sampled_from([-24 * 60, -24 * 60 - 1, -30 * 24 * 60, -30 * 24 * 60 - 1]),
    ),
    st.sampled_from(["10.213.77.142", "-"]),
    st.booleans(),  # query string
    st.booleans(),  # user name
)
log_files = st.lists(
    st.tuples(st.lists(log_line, min_size=1, max_size=8), st.booleans()), min_size=1, max_size=4
)


@SETTINGS
@given(files=log_files)
def test_squid_lines_inside_their_window_untouched_every_eligible_line_handled(files):
    with tempfile.TemporaryDirectory() as tmp, file_home(Path(tmp) / "home"):
        root = Path(tmp) / "src"
        policy = make_policy(root)
        specs = []
        for i, (lines, gz) in enumerate(files):
            made = []
            for minutes, client, query, user in lines:
                when = AS_OF + timedelta(minutes=minutes)
                url = "http://s.example/find?q=zz" if query else "http://s.example/find"
                made.append((when, squid_line(when, client, url, "u1" if user else "-")))
            path = write_log(root / "squid" / f"access.log.{i + 1}{'.gz' if gz else ''}",
                             [b for _, b in made], gz=gz)  # fmt: skip
            specs.append((path, made, path.read_bytes(), FileStamp.of(path)))

        results = runner.run_squid(AS_OF, "prop", dry_run=False, policy=policy)
        assert all(r["remaining"] == 0 and r["data_errors"] == 0 for r in results), results

        for path, made, raw, stamp in specs:

            def identifying(b: bytes) -> bool:
                f = b.split()
                return f[2] != b"-" or f[7] != b"-" or b"?" in f[6]

            eligible = [
                when for when, b in made
                if when < LOG_DELETE_CUT or (when < STRIP_CUT and identifying(b))
            ]  # fmt: skip
            if all(when < LOG_DELETE_CUT for when, _ in made):
                assert not path.exists()
                continue
            if not eligible:
                assert (path.read_bytes(), FileStamp.of(path)) == (raw, stamp)
                continue
            assert path.read_bytes()[:2] == raw[:2]  # gzip stays gzip, plain stays plain
            got = read_log(path).splitlines(keepends=True)
            expect = [(w, b) for w, b in made if w >= LOG_DELETE_CUT]
            assert len(got) == len(expect)
            for (when, original), line in zip(expect, got, strict=True):
                if when >= STRIP_CUT:
                    assert line == original
                else:
                    f, o = line.split(), original.split()
                    assert not identifying(line)
                    assert f[6] == o[6].split(b"?")[0] and f[0] == o[0] and f[3:6] == o[3:6]
