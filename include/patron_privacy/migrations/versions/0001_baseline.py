"""baseline: the warehouse schema as ``create_all`` made it before migrations

A warehouse made before migrations existed is adopted, not recreated: tables already
there are left as they are (with their indexes) and only missing ones are created, then
the version table records this revision.

Revision ID: 0001
Revises:
Created: 2026-11-30 05:03:00.560969
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _create_table(existing: set[str], name: str, *columns, **kw) -> None:
    if name not in existing:
        op.create_table(name, *columns, **kw)


def _create_index(existing: set[str], name: str, table: str, columns, **kw) -> None:
    if table not in existing:
        op.create_index(name, table, columns, **kw)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    _create_table(
        existing,
        "circulation_facts",
        sa.Column("fact_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("loan_date", sa.Date(), nullable=False),
        sa.Column("return_date", sa.Date(), nullable=True),
        sa.Column("branch", sa.String(length=32), nullable=True),
        sa.Column("item_type", sa.String(length=32), nullable=True),
        sa.Column("collection", sa.String(length=80), nullable=True),
        sa.Column("patron_category", sa.String(length=32), nullable=True),
        sa.Column("category_type", sa.String(length=4), nullable=True),
        sa.Column("age_band", sa.String(length=16), nullable=True),
        sa.Column("patron_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("renewals", sa.Integer(), nullable=False),
        sa.Column("reporting_period", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("fact_key"),
    )
    _create_index(
        existing,
        op.f("ix_circulation_facts_loan_date"),
        "circulation_facts",
        ["loan_date"],
        unique=False,
    )
    _create_table(
        existing,
        "dp_budget_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reporting_year", sa.String(length=8), nullable=False),
        sa.Column("release_period", sa.String(length=16), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("mechanism", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_index(
        existing,
        op.f("ix_dp_budget_ledger_reporting_year"),
        "dp_budget_ledger",
        ["reporting_year"],
        unique=False,
    )
    _create_table(
        existing,
        "fact_watermarks",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("high_water", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "stream"),
    )
    _create_table(
        existing,
        "internet_use_facts",
        sa.Column("fact_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("use_date", sa.Date(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=191), nullable=True),
        sa.Column("client_name", sa.String(length=191), nullable=True),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("reporting_period", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("fact_key"),
    )
    _create_index(
        existing,
        op.f("ix_internet_use_facts_use_date"),
        "internet_use_facts",
        ["use_date"],
        unique=False,
    )
    _create_table(
        existing,
        "legal_holds",
        sa.Column("hold_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("categories", sa.Text(), nullable=True),
        sa.Column("date_from", sa.DateTime(), nullable=True),
        sa.Column("date_to", sa.DateTime(), nullable=True),
        sa.Column("request_ref", sa.String(length=64), nullable=False),
        sa.Column("placed_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    _create_table(
        existing,
        "patron_record_requests",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("consent_ref", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("counts_by_table", sa.Text(), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    _create_table(
        existing,
        "pc_session_facts",
        sa.Column("fact_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("session_date", sa.Date(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=191), nullable=True),
        sa.Column("client_name", sa.String(length=191), nullable=True),
        sa.Column("duration_minutes_band", sa.String(length=16), nullable=False),
        sa.Column("patron_type", sa.String(length=16), nullable=False),
        sa.Column("patron_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("reporting_period", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("fact_key"),
    )
    _create_index(
        existing,
        op.f("ix_pc_session_facts_session_date"),
        "pc_session_facts",
        ["session_date"],
        unique=False,
    )
    _create_table(
        existing,
        "program_facts",
        sa.Column("fact_key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("branch", sa.String(length=191), nullable=True),
        sa.Column("category", sa.String(length=191), nullable=True),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("delivery_mode", sa.String(length=16), nullable=False),
        sa.Column("registration_required", sa.Boolean(), nullable=False),
        sa.Column("registered", sa.Integer(), nullable=True),
        sa.Column("attended", sa.Integer(), nullable=True),
        sa.Column("reporting_period", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("fact_key"),
    )
    _create_index(
        existing, op.f("ix_program_facts_event_date"), "program_facts", ["event_date"], unique=False
    )
    _create_table(
        existing,
        "request_register",
        sa.Column("ref", sa.String(length=32), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("agency", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("asks_for", sa.Text(), nullable=False),
        sa.Column("referred_to", sa.String(length=200), nullable=True),
        sa.Column("counsel_reviewed_on", sa.Date(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=True),
        sa.Column("records_released", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ref"),
    )
    _create_table(
        existing,
        "retention_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=False),
        sa.Column("cutoff", sa.String(length=32), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("kept_by_blocker", sa.Text(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("data_errors", sa.Integer(), nullable=False),
        sa.Column("facts_recorded", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_index(
        existing, op.f("ix_retention_audit_run_id"), "retention_audit", ["run_id"], unique=False
    )
    _create_table(
        existing,
        "validation_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("check_name", sa.String(length=100), nullable=False),
        sa.Column("column_name", sa.String(length=64), nullable=True),
        sa.Column("element_count", sa.BigInteger(), nullable=False),
        sa.Column("unexpected_count", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _create_index(
        existing, op.f("ix_validation_runs_run_id"), "validation_runs", ["run_id"], unique=False
    )
    _create_index(
        existing,
        "validation_runs_history_idx",
        "validation_runs",
        ["source", "dataset", "check_name", "as_of"],
        unique=False,
    )
    _create_table(
        existing,
        "disclosure_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_ref", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reviewed_by", sa.String(length=250), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(), nullable=False),
        sa.Column("dag_run_id", sa.String(length=250), nullable=False),
        sa.Column("package_path", sa.String(length=500), nullable=True),
        sa.Column("package_records", sa.Integer(), nullable=True),
        sa.Column("package_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_ref"],
            ["request_register.ref"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_ref", "dag_run_id"),
    )
    _create_table(
        existing,
        "legal_hold_subjects",
        sa.Column("hold_id", sa.Integer(), nullable=False),
        sa.Column("patron_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"],
            ["legal_holds.hold_id"],
        ),
        sa.UniqueConstraint("hold_id", "patron_id"),
    )


def downgrade() -> None:
    op.drop_table("legal_hold_subjects")
    op.drop_table("disclosure_reviews")
    op.drop_index("validation_runs_history_idx", table_name="validation_runs")
    op.drop_index(op.f("ix_validation_runs_run_id"), table_name="validation_runs")
    op.drop_table("validation_runs")
    op.drop_index(op.f("ix_retention_audit_run_id"), table_name="retention_audit")
    op.drop_table("retention_audit")
    op.drop_table("request_register")
    op.drop_index(op.f("ix_program_facts_event_date"), table_name="program_facts")
    op.drop_table("program_facts")
    op.drop_index(op.f("ix_pc_session_facts_session_date"), table_name="pc_session_facts")
    op.drop_table("pc_session_facts")
    op.drop_table("patron_record_requests")
    op.drop_table("legal_holds")
    op.drop_index(op.f("ix_internet_use_facts_use_date"), table_name="internet_use_facts")
    op.drop_table("internet_use_facts")
    op.drop_table("fact_watermarks")
    op.drop_index(op.f("ix_dp_budget_ledger_reporting_year"), table_name="dp_budget_ledger")
    op.drop_table("dp_budget_ledger")
    op.drop_index(op.f("ix_circulation_facts_loan_date"), table_name="circulation_facts")
    op.drop_table("circulation_facts")
