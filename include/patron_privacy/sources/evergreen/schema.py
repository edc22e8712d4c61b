"""Evergreen's own tables, as SQLAlchemy Core, for the parts of Evergreen that hold patron data.

Why this exists: the connector, the synthetic library, the tests and the benchmark must agree
with a real Evergreen database down to the schema, table and column name, type, nullability
and default, or a statement that passes in tests fails (or silently does less) against
production. Everything here follows Evergreen's ``Open-ILS/src/sql/Pg/*.sql`` (main branch):
``002.schema.config.sql``, ``005.schema.actors.sql``, ``006.schema.permissions.sql``,
``040.schema.asset.sql``, ``080.schema.money.sql``, ``090.schema.action.sql`` and the foreign
keys of ``800.fkeys.sql``. It is PostgreSQL only, as Evergreen is.

Evergreen's table inheritance is kept, because the connector depends on it:
``action.circulation`` and ``money.grocery`` inherit ``money.billable_xact`` (so a query on
``money.billable_xact`` sees every transaction of a patron), the payment types inherit
``money.payment``, and ``config.global_flag`` inherits ``config.internal_flag``. A child
shares its parent's id sequence, as in Evergreen.

Deliberate differences, each because this subset must stand alone:

* Only tables the retention rules read or write, and what they join to, are modelled.
  Foreign keys to tables that are not (``config.standing``, ``config.identification_type``,
  ``actor.workstation``, ``config.billing_type``, ``config.hold_type``, ``config.sms_carrier``,
  ``config.usr_setting_type``, ``config.org_unit_setting_type``, ``biblio.record_entry``,
  ``asset.call_number_prefix`` ...) are left out; the columns are kept.
* None of Evergreen's triggers or functions is reproduced: not the aging triggers
  (``action_circulation_aging_tgr``, ``action_hold_request_aging_tgr``), not the money
  summaries. The connector detects Evergreen's aging triggers on a real database and lets
  them do the aging (see ``connector.py``); the tests install small stand-ins of their own.
* Indexes on expressions over Evergreen's own functions (``evergreen.lowercase``) are left
  out; the indexes the retention statements use are kept under Evergreen's names.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Interval,
    MetaData,
    Numeric,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import quoted_name

__all__ = [
    "SCHEMAS",
    "PERSONAL_COLUMNS",
    "create_schema",
    "drop_schema",
    "metadata",
]

metadata = MetaData()

SCHEMAS = ("config", "permission", "actor", "asset", "money", "action")


def _tstz() -> DateTime:
    """TIMESTAMP WITH TIME ZONE: Evergreen stores every instant with its zone."""
    return DateTime(timezone=True)


def _inherits(parent: Table) -> dict:
    # Unquoted so PostgreSQL reads "schema.table", not one identifier with a dot in it.
    return {"postgresql_inherits": quoted_name(parent.fullname, quote=False)}


def _child_of(child: Table, parent: Table) -> Table:
    child.add_is_dependent_on(parent)
    return child


def _shared_id(parent: Table) -> Column:
    """A child's id: the parent's sequence, so ids are unique across the whole hierarchy."""
    seq = f"{parent.schema}.{parent.name}_id_seq"
    return Column(
        "id",
        BigInteger,
        primary_key=True,
        autoincrement=False,
        server_default=text(f"nextval('{seq}'::regclass)"),
    )


# --- config -----------------------------------------------------------------------------------

internal_flag = Table(
    "internal_flag",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text),
    Column("enabled", Boolean, nullable=False, server_default=text("false")),
    schema="config",
)

global_flag = _child_of(
    Table(
        "global_flag",
        metadata,
        Column("name", Text, primary_key=True),
        Column("value", Text),
        Column("enabled", Boolean, nullable=False, server_default=text("false")),
        Column("label", Text, nullable=False),
        schema="config",
        **_inherits(internal_flag),
    ),
    internal_flag,
)

usr_activity_group = postgresql.ENUM(
    "authen",
    "authz",
    "circ",
    "hold",
    "search",
    "mfa",
    name="usr_activity_group",
    schema="config",
    metadata=metadata,
)

usr_activity_type = Table(
    "usr_activity_type",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ewho", Text),
    Column("ewhat", Text),
    Column("ehow", Text),
    Column("label", Text, nullable=False),
    Column("egroup", usr_activity_group, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("transient", Boolean, nullable=False, server_default=text("true")),
    schema="config",
)

# --- permission -------------------------------------------------------------------------------

perm_list = Table(
    "perm_list",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("description", Text),
    schema="permission",
)

grp_tree = Table(
    "grp_tree",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column(
        "parent",
        Integer,
        ForeignKey(
            "permission.grp_tree.id", ondelete="RESTRICT", deferrable=True, initially="DEFERRED"
        ),
    ),
    Column("usergroup", Boolean, nullable=False, server_default=text("true")),
    Column("perm_interval", Interval, nullable=False, server_default=text("'3 years'::interval")),
    Column("temporary_perm_interval", Interval),
    Column("description", Text),
    Column("application_perm", Text),
    Column("hold_priority", Integer, nullable=False, server_default=text("0")),
    Column("mfa_allowed", Boolean, nullable=False, server_default=text("false")),
    Column("mfa_required", Boolean, nullable=False, server_default=text("false")),
    Column("erenew", Boolean, nullable=False, server_default=text("true")),
    Index("grp_tree_parent_idx", "parent"),
    schema="permission",
)

grp_perm_map = Table(
    "grp_perm_map",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "grp",
        Integer,
        ForeignKey(
            "permission.grp_tree.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"
        ),
        nullable=False,
    ),
    Column(
        "perm",
        Integer,
        ForeignKey(
            "permission.perm_list.id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
            deferrable=True,
            initially="DEFERRED",
        ),
        nullable=False,
    ),
    Column("depth", Integer, nullable=False),
    Column("grantable", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("grp", "perm", name="perm_grp_once"),
    schema="permission",
)

# --- actor ------------------------------------------------------------------------------------

org_unit_type = Table(
    "org_unit_type",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("opac_label", Text, nullable=False),
    Column("depth", Integer, nullable=False),
    Column(
        "parent",
        Integer,
        ForeignKey("actor.org_unit_type.id", deferrable=True, initially="DEFERRED"),
    ),
    Column("can_have_vols", Boolean, nullable=False, server_default=text("true")),
    Column("can_have_users", Boolean, nullable=False, server_default=text("true")),
    Index("actor_org_unit_type_parent_idx", "parent"),
    schema="actor",
)

org_unit = Table(
    "org_unit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "parent_ou", Integer, ForeignKey("actor.org_unit.id", deferrable=True, initially="DEFERRED")
    ),
    Column(
        "ou_type",
        Integer,
        ForeignKey("actor.org_unit_type.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column("ill_address", Integer),
    Column("holds_address", Integer),
    Column("mailing_address", Integer),
    Column("billing_address", Integer),
    Column("shortname", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False, unique=True),
    Column("email", Text),
    Column("phone", Text),
    Column("opac_visible", Boolean, nullable=False, server_default=text("true")),
    Column("staff_catalog_visible", Boolean, nullable=False, server_default=text("true")),
    Column("fiscal_calendar", Integer, nullable=False, server_default=text("1")),
    Index("actor_org_unit_parent_ou_idx", "parent_ou"),
    Index("actor_org_unit_ou_type_idx", "ou_type"),
    schema="actor",
)

org_unit_setting = Table(
    "org_unit_setting",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "org_unit",
        Integer,
        ForeignKey("actor.org_unit.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column("name", Text, nullable=False),
    Column("value", Text, nullable=False),
    UniqueConstraint("org_unit", "name", name="ou_once_per_key"),
    schema="actor",
)

usr = Table(
    "usr",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("card", Integer, unique=True),  # the active card
    Column(
        "profile",
        Integer,
        ForeignKey(
            "permission.grp_tree.id",
            name="actor_usr_profile_fkey",
            deferrable=True,
            initially="DEFERRED",
        ),
        nullable=False,
    ),
    Column("usrname", Text, nullable=False, unique=True),
    Column("email", Text),
    Column("passwd", Text),
    Column("standing", Integer, nullable=False, server_default=text("1")),
    Column("ident_type", Integer, nullable=False),
    Column("ident_value", Text),
    Column("ident_type2", Integer),
    Column("ident_value2", Text),
    Column("net_access_level", Integer, nullable=False, server_default=text("1")),
    Column("photo_url", Text),
    Column("prefix", Text),
    Column("first_given_name", Text, nullable=False),
    Column("second_given_name", Text),
    Column("family_name", Text, nullable=False),
    Column("suffix", Text),
    Column("guardian", Text),
    Column("guardian_email", Text),
    Column("pref_prefix", Text),
    Column("pref_first_given_name", Text),
    Column("pref_second_given_name", Text),
    Column("pref_family_name", Text),
    Column("pref_suffix", Text),
    Column("name_keywords", Text),
    Column("name_kw_tsvector", postgresql.TSVECTOR),
    Column("alias", Text),
    Column("day_phone", Text),
    Column("evening_phone", Text),
    Column("other_phone", Text),
    Column(
        "mailing_address",
        Integer,
        ForeignKey(
            "actor.usr_address.id",
            name="actor_usr_mailing_address_fkey",
            use_alter=True,
            deferrable=True,
            initially="DEFERRED",
        ),
    ),
    Column(
        "billing_address",
        Integer,
        ForeignKey(
            "actor.usr_address.id",
            name="actor_usr_billing_address_fkey",
            use_alter=True,
            deferrable=True,
            initially="DEFERRED",
        ),
    ),
    Column(
        "home_ou",
        Integer,
        ForeignKey(
            "actor.org_unit.id",
            name="actor_usr_home_ou_fkey",
            deferrable=True,
            initially="DEFERRED",
        ),
        nullable=False,
    ),
    Column("dob", Date),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("master_account", Boolean, nullable=False, server_default=text("false")),
    Column("super_user", Boolean, nullable=False, server_default=text("false")),
    Column("barred", Boolean, nullable=False, server_default=text("false")),
    Column("deleted", Boolean, nullable=False, server_default=text("false")),
    Column("juvenile", Boolean, nullable=False, server_default=text("false")),
    Column(
        "usrgroup",
        Integer,
        Sequence("usr_usrgroup_seq", schema="actor", metadata=metadata),
        server_default=text("nextval('actor.usr_usrgroup_seq'::regclass)"),
        nullable=False,
    ),
    Column("claims_returned_count", Integer, nullable=False, server_default=text("0")),
    Column("credit_forward_balance", Numeric(6, 2), nullable=False, server_default=text("0.00")),
    Column("last_xact_id", Text, nullable=False, server_default=text("'none'")),
    Column("create_date", _tstz(), nullable=False, server_default=text("now()")),
    Column(
        "expire_date",
        _tstz(),
        nullable=False,
        server_default=text("(now() + '3 years'::interval)"),
    ),
    Column("claims_never_checked_out_count", Integer, nullable=False, server_default=text("0")),
    Column("last_update_time", _tstz()),
    Column("locale", Text),
    Index("actor_usr_home_ou_idx", "home_ou"),
    Index("actor_usr_usrgroup_idx", "usrgroup"),
    Index("actor_usr_mailing_address_idx", "mailing_address"),
    Index("actor_usr_billing_address_idx", "billing_address"),
    schema="actor",
)

card = Table(
    "card",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "usr",
        Integer,
        ForeignKey("actor.usr.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column("barcode", Text, nullable=False, unique=True),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Index("actor_card_usr_idx", "usr"),
    schema="actor",
)

usr_address = Table(
    "usr_address",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("valid", Boolean, nullable=False, server_default=text("true")),
    Column("within_city_limits", Boolean, nullable=False, server_default=text("true")),
    Column("address_type", Text, nullable=False, server_default=text("'MAILING'")),
    Column(
        "usr",
        Integer,
        ForeignKey("actor.usr.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column("street1", Text, nullable=False),
    Column("street2", Text),
    Column("city", Text, nullable=False),
    Column("county", Text),
    Column("state", Text),
    Column("country", Text, nullable=False),
    Column("post_code", Text, nullable=False),
    Column("pending", Boolean, nullable=False, server_default=text("false")),
    Column(
        "replaces",
        Integer,
        ForeignKey("actor.usr_address.id", deferrable=True, initially="DEFERRED"),
    ),
    Index("actor_usr_addr_usr_idx", "usr"),
    schema="actor",
)

usr_setting = Table(
    "usr_setting",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "usr",
        Integer,
        ForeignKey("actor.usr.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column("name", Text, nullable=False),
    Column("value", Text, nullable=False),
    UniqueConstraint("usr", "name", name="usr_once_per_key"),
    schema="actor",
)

usr_activity = Table(
    "usr_activity",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("usr", Integer, ForeignKey("actor.usr.id", ondelete="SET NULL")),
    Column("etype", Integer, ForeignKey("config.usr_activity_type.id"), nullable=False),
    Column("event_time", _tstz(), nullable=False, server_default=text("now()")),
    Column("event_data", Text),
    Index("usr_activity_usr_idx", "usr"),
    schema="actor",
)

usr_grp_map = Table(
    "usr_grp_map",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "usr",
        Integer,
        ForeignKey("actor.usr.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column(
        "grp",
        Integer,
        ForeignKey(
            "permission.grp_tree.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"
        ),
        nullable=False,
    ),
    UniqueConstraint("usr", "grp", name="usr_grp_once"),
    schema="permission",
)

usr_perm_map = Table(
    "usr_perm_map",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "usr",
        Integer,
        ForeignKey("actor.usr.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column(
        "perm",
        Integer,
        ForeignKey(
            "permission.perm_list.id",
            onupdate="CASCADE",
            ondelete="RESTRICT",
            deferrable=True,
            initially="DEFERRED",
        ),
        nullable=False,
    ),
    Column("depth", Integer, nullable=False),
    Column("grantable", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("usr", "perm", name="perm_usr_once"),
    schema="permission",
)

# --- asset ------------------------------------------------------------------------------------

copy_location = Table(
    "copy_location",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column(
        "owning_lib",
        Integer,
        ForeignKey("actor.org_unit.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column("holdable", Boolean, nullable=False, server_default=text("true")),
    Column("hold_verify", Boolean, nullable=False, server_default=text("false")),
    Column("opac_visible", Boolean, nullable=False, server_default=text("true")),
    Column("circulate", Boolean, nullable=False, server_default=text("true")),
    Column("label_prefix", Text),
    Column("label_suffix", Text),
    Column("checkin_alert", Boolean, nullable=False, server_default=text("false")),
    Column("deleted", Boolean, nullable=False, server_default=text("false")),
    Column("url", Text),
    schema="asset",
)

call_number = Table(
    "call_number",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("creator", BigInteger, nullable=False),
    Column("create_date", _tstz(), server_default=text("now()")),
    Column("editor", BigInteger, nullable=False),
    Column("edit_date", _tstz(), server_default=text("now()")),
    Column("record", BigInteger, nullable=False),
    Column("owning_lib", Integer, nullable=False),
    Column("label", Text, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default=text("false")),
    Column("prefix", Integer, nullable=False, server_default=text("-1")),
    Column("suffix", Integer, nullable=False, server_default=text("-1")),
    Column("label_class", BigInteger, nullable=False),
    Column("label_sortkey", Text),
    Index("asset_call_number_record_idx", "record"),
    schema="asset",
)

copy = Table(
    "copy",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "circ_lib",
        Integer,
        ForeignKey("actor.org_unit.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
    Column("creator", BigInteger, nullable=False),
    Column("call_number", BigInteger, nullable=False),
    Column("editor", BigInteger, nullable=False),
    Column("create_date", _tstz(), server_default=text("now()")),
    Column("edit_date", _tstz(), server_default=text("now()")),
    Column("copy_number", Integer),
    Column("status", Integer, nullable=False, server_default=text("0")),
    Column(
        "location",
        Integer,
        ForeignKey("asset.copy_location.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
        server_default=text("1"),
    ),
    Column("loan_duration", Integer, nullable=False),
    Column("fine_level", Integer, nullable=False),
    Column("age_protect", Integer),
    Column("circulate", Boolean, nullable=False, server_default=text("true")),
    Column("deposit", Boolean, nullable=False, server_default=text("false")),
    Column("ref", Boolean, nullable=False, server_default=text("false")),
    Column("holdable", Boolean, nullable=False, server_default=text("true")),
    Column("deposit_amount", Numeric(6, 2), nullable=False, server_default=text("0.00")),
    Column("price", Numeric(8, 2)),
    Column("barcode", Text, nullable=False),
    Column("circ_modifier", Text),
    Column("circ_as_type", Text),
    Column("dummy_title", Text),
    Column("dummy_author", Text),
    Column("alert_message", Text),
    Column("opac_visible", Boolean, nullable=False, server_default=text("true")),
    Column("deleted", Boolean, nullable=False, server_default=text("false")),
    Column("floating", Integer),
    Column("dummy_isbn", Text),
    Column("status_changed_time", _tstz()),
    Column("active_date", _tstz()),
    Column("mint_condition", Boolean, nullable=False, server_default=text("true")),
    Column("cost", Numeric(8, 2)),
    Index("cp_cn_idx", "call_number"),
    schema="asset",
)

# --- money ------------------------------------------------------------------------------------

billable_xact = Table(
    "billable_xact",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column(
        "usr",
        Integer,
        ForeignKey(
            "actor.usr.id",
            name="money_billable_xact_usr_fkey",
            deferrable=True,
            initially="DEFERRED",
        ),
        nullable=False,
    ),
    Column("xact_start", _tstz(), nullable=False, server_default=text("now()")),
    Column("xact_finish", _tstz()),
    Column("unrecovered", Boolean),
    Index("m_b_x_open_xacts_idx", "usr"),
    schema="money",
)


def _xact_columns() -> list[Column]:
    """money.billable_xact's columns, as each child table repeats them."""
    return [
        _shared_id(billable_xact),
        Column("usr", Integer, nullable=False),
        Column("xact_start", _tstz(), nullable=False, server_default=text("now()")),
        Column("xact_finish", _tstz()),
        Column("unrecovered", Boolean),
    ]


grocery = _child_of(
    Table(
        "grocery",
        metadata,
        *_xact_columns(),
        Column("billing_location", Integer, nullable=False),
        Column("note", Text),
        Index("m_g_usr_idx", "usr"),
        schema="money",
        **_inherits(billable_xact),
    ),
    billable_xact,
)

billing = Table(
    "billing",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("xact", BigInteger, nullable=False),  # money.billable_xact.id, no foreign key
    Column("billing_ts", _tstz(), nullable=False),
    Column("voided", Boolean, nullable=False, server_default=text("false")),
    Column("voider", Integer),
    Column("void_time", _tstz()),
    Column("amount", Numeric(6, 2), nullable=False),
    Column("billing_type", Text, nullable=False),
    Column("btype", Integer, nullable=False),
    Column("note", Text),
    Column("create_date", _tstz(), nullable=False, server_default=text("now()")),
    Column("period_start", _tstz()),
    Column("period_end", _tstz()),
    Index("m_b_xact_idx", "xact"),
    Index("m_b_time_idx", "billing_ts"),
    schema="money",
)

payment = Table(
    "payment",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("xact", BigInteger, nullable=False),  # money.billable_xact.id, no foreign key
    Column("payment_ts", _tstz(), nullable=False, server_default=text("now()")),
    Column("voided", Boolean, nullable=False, server_default=text("false")),
    Column("amount", Numeric(6, 2), nullable=False),
    Column("note", Text),
    Index("m_p_xact_idx", "xact"),
    Index("m_p_time_idx", "payment_ts"),
    schema="money",
)


def _payment_columns() -> list[Column]:
    return [
        _shared_id(payment),
        Column("xact", BigInteger, nullable=False),
        Column("payment_ts", _tstz(), nullable=False, server_default=text("now()")),
        Column("voided", Boolean, nullable=False, server_default=text("false")),
        Column("amount", Numeric(6, 2), nullable=False),
        Column("note", Text),
    ]


def _bnm_columns() -> list[Column]:
    return [
        *_payment_columns(),
        Column("amount_collected", Numeric(6, 2), nullable=False),
        Column("accepting_usr", Integer, nullable=False),
    ]


def _payment_table(name: str, parent: Table, *extra, indexes: bool = True) -> Table:
    idx = (
        [
            Index(f"money_{name}_xact_idx", "xact"),
            Index(f"money_{name}_accepting_usr_idx", "accepting_usr"),
        ]
        if indexes
        else []
    )
    return _child_of(
        Table(name, metadata, *_bnm_columns(), *extra, *idx, schema="money", **_inherits(parent)),
        parent,
    )


bnm_payment = _payment_table("bnm_payment", payment, indexes=False)
forgive_payment = _payment_table("forgive_payment", bnm_payment)
work_payment = _payment_table("work_payment", bnm_payment)
credit_payment = _payment_table("credit_payment", bnm_payment)
goods_payment = _payment_table("goods_payment", bnm_payment)
account_adjustment = _payment_table(
    "account_adjustment",
    bnm_payment,
    Column("billing", BigInteger, ForeignKey("money.billing.id", ondelete="SET NULL")),
)
bnm_desk_payment = _payment_table(
    "bnm_desk_payment", bnm_payment, Column("cash_drawer", Integer), indexes=False
)
cash_payment = _payment_table("cash_payment", bnm_desk_payment, Column("cash_drawer", Integer))
check_payment = _payment_table(
    "check_payment",
    bnm_desk_payment,
    Column("cash_drawer", Integer),
    Column("check_number", Text, nullable=False),
)
credit_card_payment = _payment_table(
    "credit_card_payment",
    bnm_desk_payment,
    Column("cash_drawer", Integer),
    Column("cc_number", Text),
    Column("cc_processor", Text),
    Column("cc_order_number", Text),
    Column("approval_code", Text),
)
debit_card_payment = _payment_table(
    "debit_card_payment", bnm_desk_payment, Column("cash_drawer", Integer)
)

# CREATE TABLE money.aged_billing (LIKE money.billing INCLUDING INDEXES)
aged_billing = Table(
    "aged_billing",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("xact", BigInteger, nullable=False),
    Column("billing_ts", _tstz(), nullable=False),
    Column("voided", Boolean, nullable=False),
    Column("voider", Integer),
    Column("void_time", _tstz()),
    Column("amount", Numeric(6, 2), nullable=False),
    Column("billing_type", Text, nullable=False),
    Column("btype", Integer, nullable=False),
    Column("note", Text),
    Column("create_date", _tstz(), nullable=False),
    Column("period_start", _tstz()),
    Column("period_end", _tstz()),
    Index("aged_billing_xact_idx", "xact"),
    schema="money",
)

# LIKE money.payment INCLUDING INDEXES, plus what money.payment_view_for_aging adds.
aged_payment = Table(
    "aged_payment",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("xact", BigInteger, nullable=False),
    Column("payment_ts", _tstz(), nullable=False),
    Column("voided", Boolean, nullable=False),
    Column("amount", Numeric(6, 2), nullable=False),
    Column("note", Text),
    Column("payment_type", Text, nullable=False),
    Column("refundable", Boolean, nullable=False),
    Column("accepting_usr", Integer),
    Column("cash_drawer", Integer),
    Column("billing", BigInteger),
    Index("aged_payment_xact_idx", "xact"),
    Index("aged_payment_accepting_usr_idx", "accepting_usr"),
    Index("aged_payment_cash_drawer_idx", "cash_drawer"),
    Index("aged_payment_billing_idx", "billing"),
    schema="money",
)

# --- action -----------------------------------------------------------------------------------


def _circ_own_columns(*, aged: bool) -> list[Column]:
    """action.circulation's own columns; ``aged``: as ``LIKE`` copies them (no defaults)."""

    def d(sql: str):
        return None if aged else text(sql)

    return [
        Column("target_copy", BigInteger, nullable=False),  # asset.copy.id, checked by trigger
        Column("circ_lib", Integer, nullable=False),
        Column("circ_staff", Integer, nullable=False),
        Column("checkin_staff", Integer),
        Column("checkin_lib", Integer),
        Column("renewal_remaining", Integer, nullable=False),
        Column("grace_period", Interval, nullable=False),
        Column("due_date", _tstz()),
        Column("stop_fines_time", _tstz()),
        Column("checkin_time", _tstz()),
        Column("create_time", _tstz(), nullable=False, server_default=d("now()")),
        Column("duration", Interval),
        Column("fine_interval", Interval, nullable=False, server_default=d("'1 day'::interval")),
        Column("recurring_fine", Numeric(6, 2)),
        Column("max_fine", Numeric(6, 2)),
        Column("phone_renewal", Boolean, nullable=False, server_default=d("false")),
        Column("desk_renewal", Boolean, nullable=False, server_default=d("false")),
        Column("opac_renewal", Boolean, nullable=False, server_default=d("false")),
        Column("duration_rule", Text, nullable=False),
        Column("recurring_fine_rule", Text, nullable=False),
        Column("max_fine_rule", Text, nullable=False),
        Column("stop_fines", Text),
        Column("workstation", Integer),
        Column("checkin_workstation", Integer),
        Column("copy_location", Integer, nullable=False, server_default=d("1")),
        Column("checkin_scan_time", _tstz()),
        Column("auto_renewal", Boolean, nullable=False, server_default=d("false")),
        Column("auto_renewal_remaining", Integer),
    ]


STOP_FINES = (
    "CHECKIN",
    "CLAIMSRETURNED",
    "LOST",
    "MAXFINES",
    "RENEW",
    "LONGOVERDUE",
    "CLAIMSNEVERCHECKEDOUT",
)
_STOP_FINES_CHECK = "stop_fines IN ({})".format(", ".join(f"'{v}'" for v in STOP_FINES))

circulation = _child_of(
    Table(
        "circulation",
        metadata,
        *_xact_columns(),
        *_circ_own_columns(aged=False),
        Column(
            "parent_circ",
            BigInteger,
            ForeignKey("action.circulation.id", deferrable=True, initially="DEFERRED"),
        ),
        Index("circ_all_usr_idx", "usr"),
        Index("circ_circ_lib_idx", "circ_lib"),
        Index("action_circulation_target_copy_idx", "target_copy"),
        Index(
            "circ_parent_idx",
            "parent_circ",
            unique=True,
            postgresql_where=text("parent_circ IS NOT NULL"),
        ),
        Index("circ_open_xacts_idx", "usr", postgresql_where=text("xact_finish IS NULL")),
        Index(
            "circ_checkin_time", "checkin_time", postgresql_where=text("checkin_time IS NOT NULL")
        ),
        schema="action",
        **_inherits(billable_xact),
    ),
    billable_xact,
)
circulation.append_constraint(
    CheckConstraint(_STOP_FINES_CHECK, name="circulation_stop_fines_check")
)
circulation.append_constraint(
    ForeignKeyConstraint(
        ["usr"],
        ["actor.usr.id"],
        name="action_circulation_usr_fkey",
        deferrable=True,
        initially="DEFERRED",
    )
)
circulation.append_constraint(
    ForeignKeyConstraint(
        ["circ_lib"],
        ["actor.org_unit.id"],
        name="action_circulation_circ_lib_fkey",
        ondelete="SET NULL",
        deferrable=True,
        initially="DEFERRED",
    )
)
circulation.append_constraint(
    ForeignKeyConstraint(
        ["copy_location"],
        ["asset.copy_location.id"],
        deferrable=True,
        initially="DEFERRED",
    )
)

aged_circulation = Table(
    "aged_circulation",
    metadata,
    Column("usr_post_code", Text),
    Column("usr_home_ou", Integer, nullable=False),
    Column("usr_profile", Integer, nullable=False),
    Column("usr_birth_year", Integer),
    Column("copy_call_number", Integer, nullable=False),
    Column("copy_owning_lib", Integer, nullable=False),
    Column("copy_circ_lib", Integer, nullable=False),
    Column("copy_bib_record", BigInteger, nullable=False),
    # LIKE action.circulation, then DROP COLUMN usr
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("xact_start", _tstz(), nullable=False),
    Column("xact_finish", _tstz()),
    Column("unrecovered", Boolean),
    *_circ_own_columns(aged=True),
    Column("parent_circ", BigInteger),
    Index("aged_circ_circ_lib_idx", "circ_lib"),
    Index("aged_circ_start_idx", "xact_start"),
    Index("aged_circ_copy_circ_lib_idx", "copy_circ_lib"),
    Index("aged_circ_copy_owning_lib_idx", "copy_owning_lib"),
    Index("aged_circ_copy_location_idx", "copy_location"),
    Index("action_aged_circulation_target_copy_idx", "target_copy"),
    Index("action_aged_circulation_parent_circ_idx", "parent_circ"),
    schema="action",
)

hold_request_cancel_cause = Table(
    "hold_request_cancel_cause",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("label", Text, unique=True),
    Column("manual", Boolean, nullable=False, server_default=text("false")),
    schema="action",
)


def _fk(target: str, **kw) -> ForeignKey:
    return ForeignKey(target, deferrable=True, initially="DEFERRED", **kw)


def _hold_columns(*, aged: bool) -> list[Column]:
    """action.hold_request's columns; ``aged``: as action.aged_hold_request keeps them."""

    def d(sql: str):
        return None if aged else text(sql)

    def fk(target: str, **kw):
        return () if aged else (_fk(target, **kw),)

    cols = [
        Column("id", Integer, primary_key=True, autoincrement=not aged),
        Column("request_time", _tstz(), nullable=False, server_default=d("now()")),
        Column("capture_time", _tstz()),
        Column("fulfillment_time", _tstz()),
        Column("checkin_time", _tstz()),
        Column("return_time", _tstz()),
        Column("prev_check_time", _tstz()),
        Column("expire_time", _tstz()),
        Column("cancel_time", _tstz()),
        Column(
            "cancel_cause",
            Integer,
            *fk("action.hold_request_cancel_cause.id", ondelete="SET NULL"),
        ),
        Column("cancel_note", Text),
        Column("target", BigInteger, nullable=False),
        Column("current_copy", BigInteger),
        Column("fulfillment_staff", Integer),
        Column("fulfillment_lib", Integer, *fk("actor.org_unit.id")),
        Column("request_lib", Integer, *fk("actor.org_unit.id"), nullable=False),
        Column("selection_ou", Integer, *fk("actor.org_unit.id"), nullable=False),
        Column("selection_depth", Integer, nullable=False, server_default=d("0")),
        Column("pickup_lib", Integer, *fk("actor.org_unit.id"), nullable=False),
        Column("hold_type", Text),
        Column("holdable_formats", Text),
        Column("email_notify", Boolean, nullable=False, server_default=d("false")),
        Column("frozen", Boolean, nullable=False, server_default=d("false")),
        Column("thaw_date", _tstz()),
        Column("shelf_time", _tstz()),
        Column("cut_in_line", Boolean),
        Column("mint_condition", Boolean, nullable=False, server_default=d("true")),
        Column("shelf_expire_time", _tstz()),
        Column("current_shelf_lib", Integer, *fk("actor.org_unit.id")),
        Column("behind_desk", Boolean, nullable=False, server_default=d("false")),
        Column("hopeless_date", _tstz()),
    ]
    if aged:
        # usr, requestor and sms_carrier dropped; the notify columns become flags.
        cols += [
            Column("phone_notify", Boolean, nullable=False),
            Column("sms_notify", Boolean, nullable=False),
        ]
    else:
        cols += [
            Column("canceled_by", Integer, _fk("actor.usr.id")),
            Column("canceling_ws", Integer),
            Column("requestor", Integer, _fk("actor.usr.id"), nullable=False),
            Column("usr", Integer, _fk("actor.usr.id"), nullable=False),
            Column("phone_notify", Text),
            Column("sms_notify", Text),
            Column("sms_carrier", Integer),
        ]
    return cols


hold_request = Table(
    "hold_request",
    metadata,
    *_hold_columns(aged=False),
    Index("hold_request_usr_idx", "usr"),
    Index("hold_request_target_idx", "target"),
    Index("hold_request_requestor_idx", "requestor"),
    Index(
        "hold_request_open_idx",
        "id",
        postgresql_where=text("cancel_time IS NULL AND fulfillment_time IS NULL"),
    ),
    Index(
        "hold_fulfillment_time_idx",
        "fulfillment_time",
        postgresql_where=text("fulfillment_time IS NOT NULL"),
    ),
    schema="action",
)
hold_request.append_constraint(
    CheckConstraint("sms_notify IS NULL OR sms_carrier IS NOT NULL", name="sms_check")
)

aged_hold_request = Table(
    "aged_hold_request",
    metadata,
    Column("usr_post_code", Text),
    Column("usr_home_ou", Integer, nullable=False),
    Column("usr_profile", Integer, nullable=False),
    Column("usr_birth_year", Integer),
    Column("staff_placed", Boolean, nullable=False),
    *_hold_columns(aged=True),
    Index("aged_hold_request_target_idx", "target"),
    Index("aged_hold_request_pickup_lib_idx", "pickup_lib"),
    schema="action",
)

# Columns of actor.usr that identify a person (blanked when a patron is anonymized).
PERSONAL_COLUMNS: tuple[str, ...] = (
    "email",
    "passwd",
    "ident_value",
    "ident_type2",
    "ident_value2",
    "photo_url",
    "prefix",
    "second_given_name",
    "suffix",
    "guardian",
    "guardian_email",
    "pref_prefix",
    "pref_first_given_name",
    "pref_second_given_name",
    "pref_family_name",
    "pref_suffix",
    "name_keywords",
    "name_kw_tsvector",
    "alias",
    "day_phone",
    "evening_phone",
    "other_phone",
    "mailing_address",
    "billing_address",
    "card",
    "dob",
)


def create_schema(engine: Engine) -> None:
    """Create Evergreen's schemas and these tables (``IF NOT EXISTS``: a rerun is a no-op)."""
    if engine.dialect.name != "postgresql":
        raise ValueError(f"Evergreen runs on PostgreSQL, not {engine.dialect.name}")
    with engine.begin() as conn:
        for name in SCHEMAS:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {name}")
        metadata.create_all(conn)


def drop_schema(engine: Engine) -> None:
    """Drop these tables (and only these): for tests and the benchmark's own databases."""
    with engine.begin() as conn:
        metadata.drop_all(conn)
