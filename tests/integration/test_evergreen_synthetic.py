"""The synthetic Evergreen library: deterministic, in Evergreen's real shape, something for
every retention rule to bite on, and buildable by ``demo-data --ils evergreen`` into
``evergreen_db`` for the whole pipeline to run on."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from evergreen_builders import airflow_uri, engine_for, pg_database, register_validation_suite
from patron_privacy.cli import main
from patron_privacy.sources.evergreen import schema as S
from patron_privacy.sources.evergreen.synthetic import build_evergreen
from sqlalchemy import func, select, text

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("evergreen_pg")]

AS_OF = dt.date(2026, 11, 30)
ARGS = {"patrons": 120, "years": 3, "seed": 7, "as_of": AS_OF}
# Columns that hold a date set ahead of time; every other instant is before the as-of.
SCHEDULED = {"expire_date", "due_date", "expire_time"}


def _dump(eng) -> dict[str, list[tuple]]:
    with eng.connect() as c:
        return {
            t.fullname: c.execute(text(f"SELECT x::text FROM ONLY {t.fullname} x ORDER BY 1")).all()
            for t in S.metadata.sorted_tables
        }


@pytest.fixture(scope="module")
def library():
    with pg_database() as url:
        eng = engine_for(url)
        counts = build_evergreen(eng, **ARGS)
        yield eng, counts
        eng.dispose()


def test_deterministic_and_seeded(library):
    eng, counts = library
    with pg_database() as url:
        again = engine_for(url)
        assert build_evergreen(again, **ARGS) == counts
        assert _dump(again) == _dump(eng)
        again.dispose()
    with pg_database() as url:
        other = engine_for(url)
        build_evergreen(other, **{**ARGS, "seed": 8})
        assert _dump(other)["actor.usr"] != _dump(eng)["actor.usr"]
        other.dispose()


def test_refuses_a_database_with_rows(library):
    eng, _ = library
    with pytest.raises(ValueError, match="non-empty"):
        build_evergreen(eng, **ARGS)


def test_realistic_enough_for_every_rule(library):
    eng, counts = library
    c_ = S.circulation
    with eng.connect() as c:

        def q(stmt):
            return c.execute(stmt).scalar()

        assert counts["actor.usr"] == ARGS["patrons"] + 1
        renewals = q(select(func.count()).where(c_.c.parent_circ.isnot(None)))
        assert 0 < renewals < counts["action.circulation"] / 2
        # Renewals renew a circulation of the same patron and copy.
        parent = c_.alias("p")
        assert (
            q(
                select(func.count())
                .select_from(c_.join(parent, parent.c.id == c_.c.parent_circ))
                .where((parent.c.usr != c_.c.usr) | (parent.c.target_copy != c_.c.target_copy))
            )
            == 0
        )
        assert (
            q(select(func.count()).where(c_.c.xact_finish.is_(None), c_.c.checkin_time.is_(None)))
            > 0
        )
        assert (
            q(select(func.count()).where(c_.c.xact_finish.is_(None), c_.c.checkin_time.isnot(None)))
            > 0
        )
        # Every copy a circulation names exists (aging copies its call number).
        orphans = select(func.count()).where(c_.c.target_copy.notin_(select(S.copy.c.id)))
        assert q(orphans) == 0
        # No event after the as-of: midnight starting it, library time.
        end = dt.datetime.combine(AS_OF, dt.time.min)
        for t in S.metadata.sorted_tables:
            for col in t.c:
                if getattr(col.type, "timezone", False) and col.name not in SCHEDULED:
                    late = q(select(func.count()).select_from(t).where(col >= end))
                    assert late == 0, f"{t.fullname}.{col.name}"
        assert q(select(func.count()).select_from(S.credit_card_payment)) > 0
        assert q(select(func.count()).select_from(S.usr_setting)) > 0
        assert q(select(func.count()).select_from(S.usr).where(S.usr.c.juvenile)) > 0


def test_demo_data_builds_evergreen_and_the_pipeline_runs(home, monkeypatch, capsys):
    with pg_database() as url:
        monkeypatch.setenv("AIRFLOW_CONN_EVERGREEN_DB", airflow_uri(url))
        register_validation_suite(monkeypatch)
        argv = ["--patrons", "60", "--years", "2", "--seed", "3", "--as-of", "2026-11-30"]
        assert main(["demo-data", "--ils", "evergreen", *argv]) == 0
        out = capsys.readouterr().out
        assert "action.circulation" in out and "evergreen_db:" in out
        run = ["--source", "evergreen", "--as-of", "2026-11-30"]
        assert main(["enforce", *run, "--dry-run", "--json"]) == 0
        dry = {
            r["category"]: r
            for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
        }
        assert dry["finished_circulations"]["remaining"] > 0
        assert dry["hold_requests"]["remaining"] > 0
        assert main(["enforce", *run]) == 0
        assert main(["verify", *run]) == 0
        # A second build refuses the now-populated database.
        assert main(["demo-data", "--ils", "evergreen", *argv]) == 2
        assert "non-empty" in capsys.readouterr().err
