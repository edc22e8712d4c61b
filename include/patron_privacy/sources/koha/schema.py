"""Koha's own tables, as SQLAlchemy Core, for the parts of Koha that hold patron data.

Why this exists: the retention jobs, the connector and the synthetic library all need to
agree with a real Koha database down to the column name, type, nullability and default,
otherwise a query that passes in tests fails (or silently does less) against production.
Everything here follows ``installer/data/mysql/kohastructure.sql`` (Koha's main branch,
as published in the ``openfifth/koha`` mirror).

Deliberate differences from Koha, each because this subset must stand alone and also
create on SQLite:

* Foreign keys to Koha tables that are not modelled here (``biblioitems``, ``desks``,
  ``item_groups``, ``letter``, ``sms_providers``, ``message_transport_types``,
  ``account_*_types``, ``cash_registers``, ``clubs``, ``patron_lists``, ``subscription``,
  ``authorised_values``, ``restriction_types``, ``borrower_attribute_types``,
  ``aqbudgets``) are left out, and so are the keys from older tables to ``hold_groups``,
  ``housebound_profile`` and ``illbatches`` (modelled with the rest of the inventory's
  tables); the columns are kept.
* ``borrower_modifications``' primary key is Koha's ``(verification_token(191),
  borrowernumber)`` without the prefix length (the whole 255-character column fits an
  InnoDB key, and SQLite has no prefix keys).
* SQLite index names are database-wide while MySQL's are per table, so Koha's index name is
  prefixed with the table name unless it already starts with it. Foreign-key constraint
  names are Koha's (they are database-wide in MySQL too, so they are already unique).
* Three indexes Koha does not have are added because the retention clock scans them:
  ``old_issues.returndate``, ``search_history.time`` and ``message_queue.time_queued``
  (suffix ``_retention_idx``).
* Koha's ``timestamp ... ON UPDATE current_timestamp()`` columns are plain
  ``DEFAULT CURRENT_TIMESTAMP`` on SQLite; on MySQL/MariaDB the ``ON UPDATE`` clause is
  added after creation so that rewriting a row (anonymising it) moves its timestamp
  exactly as it would in Koha.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Enum,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects import mysql

__all__ = [
    "accountlines",
    "action_logs",
    "alert",
    "article_requests",
    "background_jobs",
    "biblio",
    "bookings",
    "borrower_attributes",
    "borrower_debarments",
    "borrower_files",
    "borrower_message_preferences",
    "borrower_modifications",
    "borrower_password_history",
    "borrower_password_recovery",
    "borrower_relationships",
    "borrowers",
    "branches",
    "categories",
    "checkout_renewals",
    "club_enrollments",
    "club_holds",
    "club_holds_to_patron_holds",
    "create_schema",
    "creator_batches",
    "curbside_pickups",
    "deletedborrowers",
    "discharges",
    "drop_schema",
    "hold_fill_targets",
    "hold_groups",
    "housebound_profile",
    "housebound_role",
    "housebound_visit",
    "illbatches",
    "illcomments",
    "illrequests",
    "issues",
    "items",
    "items_last_borrower",
    "itemtypes",
    "linktracker",
    "message_queue",
    "messages",
    "metadata",
    "old_issues",
    "old_reserves",
    "patron_consent",
    "patron_list_patrons",
    "patron_quota",
    "patron_quota_usage",
    "patronimage",
    "pending_offline_operations",
    "PERSONAL_COLUMNS",
    "problem_reports",
    "pseudonymized_transactions",
    "ratings",
    "recalls",
    "reserves",
    "return_claims",
    "reviews",
    "search_history",
    "statistics",
    "subscriptionroutinglist",
    "suggestions",
    "systempreferences",
    "tags_all",
    "tickets",
    "tmp_holdsqueue",
    "uploaded_files",
    "virtualshelfcontents",
    "virtualshelfshares",
    "virtualshelves",
]

metadata = MetaData()

_MYSQL = ("mysql", "mariadb")
_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


# --- column types: MySQL's exact type where it differs, a portable one elsewhere -------------


def _longtext() -> Text:
    return Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def _mediumtext() -> Text:
    return Text().with_variant(mysql.MEDIUMTEXT(), *_MYSQL)


def _tinytext() -> Text:
    return Text().with_variant(mysql.TINYTEXT(), *_MYSQL)


def _tinyint(width: int | None = None) -> SmallInteger:
    return SmallInteger().with_variant(mysql.TINYINT(display_width=width), *_MYSQL)


def _timestamp() -> DateTime:
    # TIMESTAMP on MariaDB (what Koha uses), DATETIME elsewhere; both naive local time.
    return DateTime().with_variant(mysql.TIMESTAMP(), *_MYSQL)


def _double_16_4() -> Float:
    return Float(asdecimal=False).with_variant(
        mysql.DOUBLE(precision=16, scale=4, asdecimal=False), *_MYSQL
    )


def _uint() -> Integer:
    return Integer().with_variant(mysql.INTEGER(unsigned=True), *_MYSQL)


def _ubigint() -> BigInteger:
    """``bigint(20) unsigned`` on MariaDB; INTEGER on SQLite so a key still auto-increments."""
    return (
        BigInteger()
        .with_variant(mysql.BIGINT(unsigned=True), *_MYSQL)
        .with_variant(Integer(), "sqlite")
    )


def _mediumblob() -> LargeBinary:
    return LargeBinary().with_variant(mysql.MEDIUMBLOB(), *_MYSQL)


def _longblob() -> LargeBinary:
    return LargeBinary().with_variant(mysql.LONGBLOB(), *_MYSQL)


def _binary_varchar(length: int) -> String:
    """``varchar(n) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`` (case-sensitive terms)."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), *_MYSQL
    )


def _zero():
    return text("0")


def _one():
    return text("1")


def _now():
    return func.current_timestamp()


def _touched(name: str = "timestamp") -> Column:
    """Koha's ``timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE ...`` column."""
    return Column(name, _timestamp(), nullable=False, server_default=_now())


def _table(name: str, *items, on_update: tuple[str, ...] = (), **kw) -> Table:
    table = Table(name, metadata, *items, **_TABLE_OPTIONS, **kw)
    for col in on_update:
        event.listen(
            table,
            "after_create",
            DDL(
                f"ALTER TABLE `{name}` MODIFY `{col}` TIMESTAMP NOT NULL "
                "DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"
            ).execute_if(dialect=_MYSQL),
        )
    return table


def _ix(table: str, koha_name: str, *cols: str, **kw) -> Index:
    name = koha_name if koha_name.startswith(table) else f"{table}_{koha_name}"
    return Index(name, *cols, **kw)


def _fk(name: str, col: str, ref: str, *, ondelete: str | None = None, onupdate=None):
    return ForeignKeyConstraint([col], [ref], name=name, ondelete=ondelete, onupdate=onupdate)


# --- reference tables -------------------------------------------------------------------------

branches = _table(
    "branches",
    Column("branchcode", String(10), primary_key=True, server_default=""),
    Column("branchname", _longtext(), nullable=False),
    Column("branchaddress1", _longtext()),
    Column("branchaddress2", _longtext()),
    Column("branchaddress3", _longtext()),
    Column("branchzip", String(25)),
    Column("branchcity", _longtext()),
    Column("branchstate", _longtext()),
    Column("branchcountry", _mediumtext()),
    Column("branchphone", _longtext()),
    Column("branchfax", _longtext()),
    Column("branchemail", _longtext()),
    Column("branchillemail", _longtext()),
    Column("branchreplyto", _longtext()),
    Column("branchreturnpath", _longtext()),
    Column("branchurl", _longtext()),
    Column("issuing", _tinyint(4)),
    Column("branchip", String(15)),
    Column("branchnotes", _longtext()),
    Column("geolocation", String(255)),
    Column("marcorgcode", String(16)),
    Column("pickup_location", _tinyint(1), nullable=False, server_default=_one()),
    Column("public", _tinyint(1), nullable=False, server_default=_one()),
    Column("opacuserjs", _longtext()),
    Column("opacusercss", _longtext()),
)

categories = _table(
    "categories",
    Column("categorycode", String(10), primary_key=True, server_default=""),
    Column("description", _longtext()),
    Column("enrolmentperiod", SmallInteger),
    Column("enrolmentperioddate", Date),
    Column("password_expiry_days", SmallInteger),
    Column("upperagelimit", SmallInteger),
    Column("dateofbirthrequired", _tinyint(1)),
    Column("enrolmentfee", Numeric(28, 6)),
    Column("overduenoticerequired", _tinyint(1)),
    Column("print_notice_charge", Numeric(28, 6), server_default=text("0.00")),
    Column("hidelostitems", _tinyint(1), nullable=False, server_default=_zero()),
    Column("category_type", String(1), nullable=False, server_default="A"),
    Column(
        "BlockExpiredPatronOpacActions",
        String(128),
        nullable=False,
        server_default="follow_syspref_BlockExpiredPatronOpacActions",
    ),
    Column(
        "default_privacy",
        Enum("default", "never", "forever", name="categories_default_privacy"),
        nullable=False,
        server_default="default",
    ),
    Column(
        "checkprevcheckout",
        Enum("yes", "no", "inherit", name="categories_checkprevcheckout"),
        nullable=False,
        server_default="inherit",
    ),
    Column("can_place_ill_in_opac", _tinyint(1), nullable=False, server_default=_one()),
    Column("can_be_guarantee", _tinyint(1), nullable=False, server_default=_zero()),
    Column("reset_password", _tinyint(1)),
    Column("change_password", _tinyint(1)),
    Column("password_history_count", SmallInteger),
    Column("min_password_length", SmallInteger),
    Column("require_strong_password", _tinyint(1)),
    Column("force_password_reset_when_set_by_staff", _tinyint(1)),
    Column("exclude_from_local_holds_priority", _tinyint(1)),
    Column("noissuescharge", Integer),
    Column("noissueschargeguarantees", Integer),
    Column("noissueschargeguarantorswithguarantees", Integer),
    Column("enforce_expiry_notice", _tinyint(1), nullable=False, server_default=_zero()),
    UniqueConstraint("categorycode", name="categorycode"),
)

itemtypes = _table(
    "itemtypes",
    Column("itemtype", String(10), primary_key=True, server_default=""),
    Column("parent_type", String(10)),
    Column("description", _longtext()),
    Column("rentalcharge", Numeric(28, 6)),
    Column("rentalcharge_daily", Numeric(28, 6)),
    Column("rentalcharge_daily_calendar", _tinyint(1), nullable=False, server_default=_one()),
    Column("rentalcharge_hourly", Numeric(28, 6)),
    Column("rentalcharge_hourly_calendar", _tinyint(1), nullable=False, server_default=_one()),
    Column("defaultreplacecost", Numeric(28, 6)),
    Column("processfee", Numeric(28, 6)),
    Column("notforloan", _tinyint(1), nullable=False, server_default=_zero()),
    Column("imageurl", String(200)),
    Column("summary", _mediumtext()),
    Column("checkinmsg", String(255)),
    Column("checkinmsgtype", String(16), nullable=False, server_default="message"),
    Column("sip_media_type", String(3)),
    Column("sip_magnetic", _tinyint(1), nullable=False, server_default=_zero()),
    Column("hideinopac", _tinyint(1), nullable=False, server_default=_zero()),
    Column("searchcategory", String(80)),
    Column("automatic_checkin", _tinyint(1), nullable=False, server_default=_zero()),
    Column("bookable", _tinyint(1), nullable=False, server_default=_zero()),
    Column(
        "checkprevcheckout",
        Enum("yes", "no", "inherit", name="itemtypes_checkprevcheckout"),
        nullable=False,
        server_default="inherit",
    ),
    UniqueConstraint("itemtype", name="itemtype"),
    _ix("itemtypes", "itemtypes_ibfk_1", "parent_type"),
    _fk("itemtypes_ibfk_1", "parent_type", "itemtypes.itemtype"),
)

systempreferences = _table(
    "systempreferences",
    Column("variable", String(50), primary_key=True, server_default=""),
    Column("value", _mediumtext(), nullable=False),
    Column("options", _longtext()),
    Column("explanation", _mediumtext()),
    Column("type", String(20)),
)

# --- catalogue --------------------------------------------------------------------------------

biblio = _table(
    "biblio",
    Column("biblionumber", Integer, primary_key=True, autoincrement=True),
    Column("frameworkcode", String(4), nullable=False, server_default=""),
    Column("author", _longtext()),
    Column("title", _longtext()),
    Column("medium", _longtext()),
    Column("subtitle", _longtext()),
    Column("part_number", _longtext()),
    Column("part_name", _longtext()),
    Column("unititle", _longtext()),
    Column("notes", _longtext()),
    Column("serial", _tinyint(1)),
    Column("seriestitle", _longtext()),
    Column("copyrightdate", SmallInteger),
    _touched(),
    Column("datecreated", Date, nullable=False),
    Column("abstract", _longtext()),
    Column("opac_suppressed", _tinyint(1), nullable=False, server_default=_zero()),
    _ix("biblio", "blbnoidx", "biblionumber"),
    _ix("biblio", "suppressedidx", "opac_suppressed"),
    on_update=("timestamp",),
)

items = _table(
    "items",
    Column("itemnumber", Integer, primary_key=True, autoincrement=True),
    Column("biblionumber", Integer, nullable=False, server_default=_zero()),
    Column("biblioitemnumber", Integer, nullable=False, server_default=_zero()),
    Column("barcode", String(20)),
    Column("bookable", _tinyint(1)),
    Column("dateaccessioned", Date),
    Column("booksellerid", _longtext()),
    Column("homebranch", String(10)),
    Column("price", Numeric(8, 2)),
    Column("replacementprice", Numeric(8, 2)),
    Column("replacementpricedate", Date),
    Column("datelastborrowed", Date),
    Column("datelastseen", DateTime),
    Column("stack", _tinyint(1)),
    Column("notforloan", _tinyint(1), nullable=False, server_default=_zero()),
    Column("damaged", _tinyint(1), nullable=False, server_default=_zero()),
    Column("damaged_on", DateTime),
    Column("itemlost", _tinyint(1), nullable=False, server_default=_zero()),
    Column("itemlost_on", DateTime),
    Column("withdrawn", _tinyint(1), nullable=False, server_default=_zero()),
    Column("withdrawn_on", DateTime),
    Column("itemcallnumber", String(255)),
    Column("coded_location_qualifier", String(10)),
    Column("issues", SmallInteger, server_default=_zero()),
    Column("renewals", SmallInteger),
    Column("localuse", SmallInteger),
    Column("reserves", SmallInteger),
    Column("restricted", _tinyint(1)),
    Column("itemnotes", _longtext()),
    Column("itemnotes_nonpublic", _longtext()),
    Column("holdingbranch", String(10)),
    _touched(),
    Column("deleted_on", DateTime),
    Column("location", String(80)),
    Column("permanent_location", String(80)),
    Column("onloan", Date),
    Column("cn_source", String(10)),
    Column("cn_sort", String(255)),
    Column("ccode", String(80)),
    Column("materials", _mediumtext()),
    Column("uri", _mediumtext()),
    Column("itype", String(10)),
    Column("more_subfields_xml", _longtext()),
    Column("enumchron", _mediumtext()),
    Column("copynumber", String(32)),
    Column("stocknumber", String(80)),
    Column("new_status", String(32)),
    Column("exclude_from_local_holds_priority", _tinyint(1)),
    UniqueConstraint("barcode", name="itembarcodeidx"),
    _ix("items", "itemstocknumberidx", "stocknumber"),
    _ix("items", "itembinoidx", "biblioitemnumber"),
    _ix("items", "itembibnoidx", "biblionumber"),
    _ix("items", "homebranch", "homebranch"),
    _ix("items", "holdingbranch", "holdingbranch"),
    _ix("items", "itemcallnumber", "itemcallnumber", mysql_length={"itemcallnumber": 191}),
    _ix("items", "items_location", "location"),
    _ix("items", "items_ccode", "ccode"),
    _ix("items", "itype_idx", "itype"),
    _ix("items", "timestamp", "timestamp"),
    _fk("items_ibfk_2", "homebranch", "branches.branchcode", onupdate="CASCADE"),
    _fk("items_ibfk_3", "holdingbranch", "branches.branchcode", onupdate="CASCADE"),
    _fk(
        "items_ibfk_4",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    on_update=("timestamp",),
)

# --- patrons ----------------------------------------------------------------------------------


def _borrower_columns(*, deleted: bool) -> list[Column]:
    """All 84 ``borrowers`` columns, in Koha's order; ``deletedborrowers`` has no PK."""
    if deleted:
        pk = Column("borrowernumber", Integer, nullable=False, server_default=_zero())
    else:
        pk = Column("borrowernumber", Integer, primary_key=True, autoincrement=True)
    return [
        pk,
        Column("cardnumber", String(32)),
        Column("surname", _longtext()),
        Column("firstname", _mediumtext()),
        Column("preferred_name", _longtext()),
        Column("middle_name", _longtext()),
        Column("title", _longtext()),
        Column("othernames", _longtext()),
        Column("initials", _mediumtext()),
        Column("pronouns", _longtext()),
        Column("streetnumber", _tinytext()),
        Column("streettype", _tinytext()),
        Column("address", _longtext()),
        Column("address2", _mediumtext()),
        Column("city", _longtext()),
        Column("state", _mediumtext()),
        Column("zipcode", _tinytext()),
        Column("country", _mediumtext()),
        Column("email", _longtext()),
        Column("phone", _mediumtext()),
        Column("mobile", _tinytext()),
        Column("fax", _longtext()),
        Column("emailpro", _mediumtext()),
        Column("phonepro", _mediumtext()),
        Column("B_streetnumber", _tinytext()),
        Column("B_streettype", _tinytext()),
        Column("B_address", _mediumtext()),
        Column("B_address2", _mediumtext()),
        Column("B_city", _longtext()),
        Column("B_state", _mediumtext()),
        Column("B_zipcode", _tinytext()),
        Column("B_country", _mediumtext()),
        Column("B_email", _mediumtext()),
        Column("B_phone", _longtext()),
        Column("dateofbirth", Date),
        Column("branchcode", String(10), nullable=False, server_default=""),
        Column("categorycode", String(10), nullable=False, server_default=""),
        Column("dateenrolled", Date),
        Column("dateexpiry", Date),
        Column("password_expiration_date", Date),
        Column("date_renewed", Date),
        Column("gonenoaddress", _tinyint(1)),
        Column("lost", _tinyint(1)),
        Column("debarred", Date),
        Column("debarredcomment", String(255)),
        Column("contactname", _longtext()),
        Column("contactfirstname", _mediumtext()),
        Column("contacttitle", _mediumtext()),
        Column("borrowernotes", _longtext()),
        Column("relationship", String(100)),
        Column("sex", String(1)),
        Column("password", String(60)),
        Column("secret", _mediumtext()),
        Column(
            "auth_method",
            Enum("password", "two-factor", name="auth_method"),
            nullable=False,
            server_default="password",
        ),
        Column("flags", BigInteger),
        Column("userid", String(75)),
        Column("opacnote", _longtext()),
        Column("contactnote", String(255)),
        Column("sort1", String(80)),
        Column("sort2", String(80)),
        Column("altcontactfirstname", _mediumtext()),
        Column("altcontactsurname", _mediumtext()),
        Column("altcontactaddress1", _mediumtext()),
        Column("altcontactaddress2", _mediumtext()),
        Column("altcontactaddress3", _mediumtext()),
        Column("altcontactstate", _mediumtext()),
        Column("altcontactzipcode", _mediumtext()),
        Column("altcontactcountry", _mediumtext()),
        Column("altcontactphone", _mediumtext()),
        Column("smsalertnumber", String(50)),
        Column("sms_provider_id", Integer),
        Column("privacy", Integer, nullable=False, server_default=_one()),
        Column("privacy_guarantor_fines", _tinyint(1), nullable=False, server_default=_zero()),
        Column("privacy_guarantor_checkouts", _tinyint(1), nullable=False, server_default=_zero()),
        Column(
            "checkprevcheckout",
            Enum("yes", "no", "inherit", name="borrowers_checkprevcheckout"),
            nullable=False,
            server_default="inherit",
        ),
        _touched("updated_on"),
        Column("lastseen", DateTime),
        Column("lang", String(25), nullable=False, server_default="default"),
        Column("login_attempts", Integer, nullable=False, server_default=_zero()),
        Column("overdrive_auth_token", _mediumtext()),
        Column("anonymized", _tinyint(1), nullable=False, server_default=_zero()),
        Column("autorenew_checkouts", _tinyint(1), nullable=False, server_default=_one()),
        Column("primary_contact_method", String(45)),
        Column("protected", _tinyint(1), nullable=False, server_default=_zero()),
    ]


_NAME_PREFIX = {
    "surname": 100,
    "preferred_name": 80,
    "firstname": 80,
    "middle_name": 50,
    "othernames": 50,
    "streetnumber": 20,
    "address": 100,
    "address2": 75,
    "city": 75,
    "state": 40,
    "zipcode": 20,
    "country": 40,
}

borrowers = _table(
    "borrowers",
    *_borrower_columns(deleted=False),
    UniqueConstraint("cardnumber", name="cardnumber"),
    UniqueConstraint("userid", name="userid"),
    _ix("borrowers", "categorycode", "categorycode"),
    _ix("borrowers", "branchcode", "branchcode"),
    _ix("borrowers", "surname_idx", "surname", mysql_length={"surname": 191}),
    _ix("borrowers", "firstname_idx", "firstname", mysql_length={"firstname": 191}),
    _ix("borrowers", "othernames_idx", "othernames", mysql_length={"othernames": 191}),
    _ix("borrowers", "sms_provider_id", "sms_provider_id"),
    _ix("borrowers", "cardnumber_idx", "cardnumber"),
    _ix("borrowers", "userid_idx", "userid"),
    _ix("borrowers", "middle_name_idx", "middle_name", mysql_length={"middle_name": 768}),
    _ix(
        "borrowers",
        "preferred_name_idx",
        "preferred_name",
        mysql_length={"preferred_name": 768},
    ),
    _ix("borrowers", "idx_borrowers_sort_order", *_NAME_PREFIX, mysql_length=_NAME_PREFIX),
    _fk("borrowers_ibfk_1", "categorycode", "categories.categorycode"),
    _fk("borrowers_ibfk_2", "branchcode", "branches.branchcode"),
    on_update=("updated_on",),
)

deletedborrowers = _table(
    "deletedborrowers",
    *_borrower_columns(deleted=True),
    _ix("deletedborrowers", "borrowernumber", "borrowernumber"),
    _ix("deletedborrowers", "cardnumber", "cardnumber"),
    _ix("deletedborrowers", "sms_provider_id", "sms_provider_id"),
    on_update=("updated_on",),
)

borrower_relationships = _table(
    "borrower_relationships",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("guarantor_id", Integer, nullable=False),
    Column("guarantee_id", Integer, nullable=False),
    Column("relationship", String(100), nullable=False),
    UniqueConstraint("guarantor_id", "guarantee_id", name="guarantor_guarantee_idx"),
    _ix("borrower_relationships", "r_guarantee", "guarantee_id"),
    _fk(
        "r_guarantee",
        "guarantee_id",
        "borrowers.borrowernumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "r_guarantor",
        "guarantor_id",
        "borrowers.borrowernumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
)

# --- circulation ------------------------------------------------------------------------------


def _checkout_columns(*, old: bool) -> list[Column]:
    if old:
        first = [
            Column("issue_id", Integer, primary_key=True, autoincrement=False),
            Column("borrowernumber", Integer),
            Column("issuer_id", Integer),
            Column("itemnumber", Integer),
        ]
    else:
        first = [
            Column("issue_id", Integer, primary_key=True, autoincrement=True),
            Column("borrowernumber", Integer, nullable=False),
            Column("issuer_id", Integer),
            Column("itemnumber", Integer, nullable=False),
        ]
    return [
        *first,
        Column("booking_id", Integer),
        Column("date_due", DateTime),
        Column("branchcode", String(10)),
        Column("returndate", DateTime),
        Column("checkin_library", String(10)),
        Column("lastreneweddate", DateTime),
        Column("renewals_count", _tinyint(4), nullable=False, server_default=_zero()),
        Column("unseen_renewals", _tinyint(4), nullable=False, server_default=_zero()),
        Column("auto_renew", _tinyint(1), server_default=_zero()),
        Column("auto_renew_error", String(32)),
        _touched(),
        Column("issuedate", DateTime),
        Column("onsite_checkout", _tinyint(1), nullable=False, server_default=_zero()),
        Column("note", _longtext()),
        Column("notedate", DateTime),
        Column("noteseen", _tinyint(1)),
    ]


issues = _table(
    "issues",
    *_checkout_columns(old=False),
    UniqueConstraint("itemnumber", name="itemnumber"),
    _ix("issues", "issuesborridx", "borrowernumber"),
    _ix("issues", "itemnumber_idx", "itemnumber"),
    _ix("issues", "branchcode_idx", "branchcode"),
    _ix("issues", "bordate", "borrowernumber", "timestamp"),
    _ix("issues", "issues_ibfk_borrowers_borrowernumber", "issuer_id"),
    _ix("issues", "issues_booking_id_fk", "booking_id"),
    _fk(
        "issues_booking_id_fk",
        "booking_id",
        "bookings.booking_id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk("issues_ibfk_1", "borrowernumber", "borrowers.borrowernumber", onupdate="CASCADE"),
    _fk("issues_ibfk_2", "itemnumber", "items.itemnumber", onupdate="CASCADE"),
    _fk(
        "issues_ibfk_borrowers_borrowernumber",
        "issuer_id",
        "borrowers.borrowernumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    on_update=("timestamp",),
)

old_issues = _table(
    "old_issues",
    *_checkout_columns(old=True),
    _ix("old_issues", "old_issuesborridx", "borrowernumber"),
    _ix("old_issues", "old_issuesitemidx", "itemnumber"),
    _ix("old_issues", "branchcode_idx", "branchcode"),
    _ix("old_issues", "old_bordate", "borrowernumber", "timestamp"),
    _ix("old_issues", "old_issues_ibfk_borrowers_borrowernumber", "issuer_id"),
    _ix("old_issues", "old_issues_booking_id_fk", "booking_id"),
    _ix("old_issues", "old_issues_returndate_retention_idx", "returndate"),
    _fk(
        "old_issues_booking_id_fk",
        "booking_id",
        "bookings.booking_id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "old_issues_ibfk_1",
        "borrowernumber",
        "borrowers.borrowernumber",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
    _fk(
        "old_issues_ibfk_2",
        "itemnumber",
        "items.itemnumber",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
    _fk(
        "old_issues_ibfk_borrowers_borrowernumber",
        "issuer_id",
        "borrowers.borrowernumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    on_update=("timestamp",),
)


def _hold_columns(*, old: bool) -> list[Column]:
    if old:
        first = [
            Column("reserve_id", Integer, primary_key=True, autoincrement=False),
            Column("borrowernumber", Integer),
            Column("reservedate", Date),
            Column("biblionumber", Integer),
        ]
    else:
        first = [
            Column("reserve_id", Integer, primary_key=True, autoincrement=True),
            Column("borrowernumber", Integer, nullable=False, server_default=_zero()),
            Column("reservedate", Date),
            Column("biblionumber", Integer, nullable=False, server_default=_zero()),
        ]
    return [
        *first,
        Column("deleted_biblionumber", Integer),
        Column("item_group_id", Integer),
        Column("branchcode", String(10), nullable=old),
        Column("desk_id", Integer),
        Column("notificationdate", Date),
        Column("reminderdate", Date),
        Column("cancellationdate", Date),
        Column("cancellation_reason", String(80)),
        Column("reservenotes", _longtext()),
        Column("priority", SmallInteger, nullable=False, server_default=_one()),
        Column("found", String(1)),
        _touched(),
        Column("itemnumber", Integer),
        Column("waitingdate", Date),
        Column("expirationdate", Date),
        Column("patron_expiration_date", Date),
        Column("lowestPriority", _tinyint(1), nullable=False, server_default=_zero()),
        Column("suspend", _tinyint(1), nullable=False, server_default=_zero()),
        Column("suspend_until", DateTime),
        Column("itemtype", String(10)),
        Column("item_level_hold", _tinyint(1), nullable=False, server_default=_zero()),
        Column("non_priority", _tinyint(1), nullable=False, server_default=_zero()),
        Column("hold_group_id", _uint()),
    ]


reserves = _table(
    "reserves",
    *_hold_columns(old=False),
    _ix("reserves", "priorityfoundidx", "priority", "found"),
    _ix("reserves", "borrowernumber", "borrowernumber"),
    _ix("reserves", "biblionumber", "biblionumber"),
    _ix("reserves", "itemnumber", "itemnumber"),
    _ix("reserves", "branchcode", "branchcode"),
    _ix("reserves", "desk_id", "desk_id"),
    _ix("reserves", "itemtype", "itemtype"),
    _ix("reserves", "reserves_ibfk_ig", "item_group_id"),
    _ix("reserves", "reserves_ibfk_hg", "hold_group_id"),
    _fk(
        "reserves_ibfk_1",
        "borrowernumber",
        "borrowers.borrowernumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "reserves_ibfk_2",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "reserves_ibfk_3",
        "itemnumber",
        "items.itemnumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "reserves_ibfk_4",
        "branchcode",
        "branches.branchcode",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "reserves_ibfk_5",
        "itemtype",
        "itemtypes.itemtype",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    on_update=("timestamp",),
)

old_reserves = _table(
    "old_reserves",
    *_hold_columns(old=True),
    _ix("old_reserves", "old_reserves_borrowernumber", "borrowernumber"),
    _ix("old_reserves", "old_reserves_biblionumber", "biblionumber"),
    _ix("old_reserves", "old_reserves_itemnumber", "itemnumber"),
    _ix("old_reserves", "old_reserves_branchcode", "branchcode"),
    _ix("old_reserves", "old_reserves_itemtype", "itemtype"),
    _ix("old_reserves", "old_reserves_ibfk_ig", "item_group_id"),
    _ix("old_reserves", "old_reserves_ibfk_hg", "hold_group_id"),
    _fk(
        "old_reserves_ibfk_1",
        "borrowernumber",
        "borrowers.borrowernumber",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
    _fk(
        "old_reserves_ibfk_2",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
    _fk(
        "old_reserves_ibfk_3",
        "itemnumber",
        "items.itemnumber",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
    _fk(
        "old_reserves_ibfk_4",
        "itemtype",
        "itemtypes.itemtype",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
    _fk(
        "old_reserves_ibfk_branchcode",
        "branchcode",
        "branches.branchcode",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    on_update=("timestamp",),
)

accountlines = _table(
    "accountlines",
    Column("accountlines_id", Integer, primary_key=True, autoincrement=True),
    Column("issue_id", Integer),
    Column("old_issue_id", Integer),
    Column("reserve_id", Integer),
    Column("old_reserve_id", Integer),
    Column("borrowernumber", Integer),
    Column("itemnumber", Integer),
    Column("date", _timestamp()),
    Column("amount", Numeric(28, 6)),
    Column("description", _longtext()),
    Column("credit_type_code", String(80)),
    Column("debit_type_code", String(80)),
    Column("credit_number", String(20)),
    Column("status", String(16)),
    Column("payment_type", String(80)),
    Column("amountoutstanding", Numeric(28, 6)),
    _touched(),
    Column("note", _mediumtext()),
    Column("manager_id", Integer),
    Column("register_id", Integer),
    Column("interface", String(16), nullable=False),
    Column("branchcode", String(10)),
    _ix("accountlines", "acctsborridx", "borrowernumber"),
    _ix("accountlines", "timeidx", "timestamp"),
    _ix("accountlines", "credit_type_code", "credit_type_code"),
    _ix("accountlines", "debit_type_code", "debit_type_code"),
    _ix("accountlines", "itemnumber", "itemnumber"),
    _ix("accountlines", "branchcode", "branchcode"),
    _ix("accountlines", "manager_id", "manager_id"),
    _ix("accountlines", "accountlines_ibfk_registers", "register_id"),
    _ix("accountlines", "accountlines_ibfk_old_issues", "old_issue_id"),
    _ix("accountlines", "accountlines_ibfk_issues", "issue_id"),
    _ix("accountlines", "accountlines_ibfk_reserves", "reserve_id"),
    _ix("accountlines", "accountlines_ibfk_old_reserves", "old_reserve_id"),
    _fk(
        "accountlines_ibfk_borrowers",
        "borrowernumber",
        "borrowers.borrowernumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "accountlines_ibfk_borrowers_2",
        "manager_id",
        "borrowers.borrowernumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "accountlines_ibfk_branches",
        "branchcode",
        "branches.branchcode",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "accountlines_ibfk_issues",
        "issue_id",
        "issues.issue_id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "accountlines_ibfk_items",
        "itemnumber",
        "items.itemnumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "accountlines_ibfk_old_issues",
        "old_issue_id",
        "old_issues.issue_id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "accountlines_ibfk_reserves",
        "reserve_id",
        "reserves.reserve_id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "accountlines_ibfk_old_reserves",
        "old_reserve_id",
        "old_reserves.reserve_id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    on_update=("timestamp",),
)

# Koha's statistics table has no primary key: rows are an append-only transaction log.
statistics = _table(
    "statistics",
    Column("datetime", DateTime),
    Column("branch", String(10)),
    Column("value", _double_16_4()),
    Column("type", String(16)),
    Column("other", _longtext()),
    Column("illrequest_id", Integer),
    Column("itemnumber", Integer),
    Column("itemtype", String(10)),
    Column("location", String(80)),
    Column("borrowernumber", Integer),
    Column("ccode", String(80)),
    Column("categorycode", String(10)),
    Column("interface", String(30)),
    _ix("statistics", "timeidx", "datetime"),
    _ix("statistics", "branch_idx", "branch"),
    _ix("statistics", "type_idx", "type"),
    _ix("statistics", "itemnumber_idx", "itemnumber"),
    _ix("statistics", "itemtype_idx", "itemtype"),
    _ix("statistics", "borrowernumber_idx", "borrowernumber"),
    _ix("statistics", "ccode_idx", "ccode"),
    _ix("statistics", "illrequest_idx", "illrequest_id"),
)

# --- patron traces outside circulation --------------------------------------------------------

search_history = _table(
    "search_history",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("userid", Integer, nullable=False),
    Column("sessionid", String(32), nullable=False),
    Column("query_desc", String(255), nullable=False),
    Column("query_cgi", _mediumtext(), nullable=False),
    Column("type", String(16), nullable=False, server_default="biblio"),
    Column("total", Integer, nullable=False),
    Column("time", _timestamp(), nullable=False, server_default=_now()),
    _ix("search_history", "userid", "userid"),
    _ix("search_history", "sessionid", "sessionid"),
    _ix("search_history", "search_history_time_retention_idx", "time"),
    comment="Opac search history results",
)

action_logs = _table(
    "action_logs",
    Column("action_id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", _timestamp(), nullable=False, server_default=_now()),
    Column("user", Integer, nullable=False, server_default=_zero()),
    Column("module", _mediumtext()),
    Column("action", _mediumtext()),
    Column("object", Integer),
    Column("info", _mediumtext()),
    Column("interface", String(30)),
    Column("script", String(255)),
    Column("trace", Text),
    Column("diff", _longtext()),
    _ix("action_logs", "timestamp_idx", "timestamp"),
    _ix("action_logs", "user_idx", "user"),
    _ix("action_logs", "module_idx", "module", mysql_length={"module": 191}),
    _ix("action_logs", "action_idx", "action", mysql_length={"action": 191}),
    _ix("action_logs", "object_idx", "object"),
    _ix("action_logs", "info_idx", "info", mysql_length={"info": 191}),
    _ix("action_logs", "interface", "interface"),
)

message_queue = _table(
    "message_queue",
    Column("message_id", Integer, primary_key=True, autoincrement=True),
    Column("letter_id", Integer),
    Column("borrowernumber", Integer),
    Column("subject", _mediumtext()),
    Column("content", _mediumtext()),
    Column("metadata", _mediumtext()),
    Column("letter_code", String(64)),
    Column("message_transport_type", String(20), nullable=False),
    Column(
        "status",
        Enum("sent", "pending", "failed", "deleted", name="message_queue_status"),
        nullable=False,
        server_default="pending",
    ),
    Column("time_queued", _timestamp()),
    _touched("updated_on"),
    Column("to_address", _longtext()),
    Column("cc_address", _longtext()),
    Column("from_address", _longtext()),
    Column("reply_address", _longtext()),
    Column("content_type", _mediumtext()),
    Column("failure_code", _mediumtext()),
    _ix("message_queue", "borrowernumber", "borrowernumber"),
    _ix("message_queue", "message_transport_type", "message_transport_type"),
    _ix("message_queue", "letter_fk", "letter_id"),
    _ix("message_queue", "message_queue_time_queued_retention_idx", "time_queued"),
    _fk(
        "messageq_ibfk_1",
        "borrowernumber",
        "borrowers.borrowernumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    on_update=("updated_on",),
)

# --- the rest of Koha's patron data (the personal-data inventory, issue 3) ---------------------
#
# Every table below links to a patron (a foreign key to ``borrowers``, or a known keyless
# reference) or holds a patron's own data. Columns, types, keys and constraint names follow
# kohastructure.sql; only the foreign keys to tables this module does not model are left out.


def _borrower_fk(name: str, col: str, *, ondelete: str = "CASCADE", onupdate="CASCADE"):
    return _fk(name, col, "borrowers.borrowernumber", ondelete=ondelete, onupdate=onupdate)


items_last_borrower = _table(
    "items_last_borrower",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("itemnumber", Integer, nullable=False),
    Column("borrowernumber", Integer, nullable=False),
    _touched("created_on"),
    UniqueConstraint("itemnumber", name="itemnumber"),
    _ix("items_last_borrower", "borrowernumber", "borrowernumber"),
    _fk(
        "items_last_borrower_ibfk_1",
        "itemnumber",
        "items.itemnumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _borrower_fk("items_last_borrower_ibfk_2", "borrowernumber"),
    on_update=("created_on",),
)

# A patron's (or a self-registrant's) requested changes, waiting for staff: a full copy of
# the patron columns. Koha declares no foreign key, so only the keyless rules find it.
borrower_modifications = _table(
    "borrower_modifications",
    _touched(),
    Column("verification_token", String(255), nullable=False, server_default=""),
    Column("changed_fields", _mediumtext()),
    Column("borrowernumber", Integer, nullable=False, server_default=_zero()),
    Column("cardnumber", String(32)),
    Column("surname", _longtext()),
    Column("firstname", _mediumtext()),
    Column("preferred_name", _longtext()),
    Column("middle_name", _longtext()),
    Column("title", _longtext()),
    Column("othernames", _longtext()),
    Column("initials", _mediumtext()),
    Column("pronouns", _longtext()),
    Column("streetnumber", _tinytext()),
    Column("streettype", String(50)),
    Column("address", _longtext()),
    Column("address2", _mediumtext()),
    Column("city", _longtext()),
    Column("state", _mediumtext()),
    Column("zipcode", String(25)),
    Column("country", _mediumtext()),
    Column("email", _longtext()),
    Column("phone", _mediumtext()),
    Column("mobile", String(50)),
    Column("fax", _longtext()),
    Column("emailpro", _mediumtext()),
    Column("phonepro", _mediumtext()),
    Column("B_streetnumber", _tinytext()),
    Column("B_streettype", String(50)),
    Column("B_address", String(100)),
    Column("B_address2", _mediumtext()),
    Column("B_city", _longtext()),
    Column("B_state", _mediumtext()),
    Column("B_zipcode", String(25)),
    Column("B_country", _mediumtext()),
    Column("B_email", _mediumtext()),
    Column("B_phone", _longtext()),
    Column("dateofbirth", Date),
    Column("branchcode", String(10)),
    Column("categorycode", String(10)),
    Column("dateenrolled", Date),
    Column("dateexpiry", Date),
    Column("date_renewed", Date),
    Column("gonenoaddress", _tinyint(1)),
    Column("lost", _tinyint(1)),
    Column("debarred", Date),
    Column("debarredcomment", String(255)),
    Column("contactname", _longtext()),
    Column("contactfirstname", _mediumtext()),
    Column("contacttitle", _mediumtext()),
    Column("borrowernotes", _longtext()),
    Column("relationship", String(100)),
    Column("sex", String(1)),
    Column("password", String(30)),
    Column("flags", BigInteger),
    Column("userid", String(75)),
    Column("opacnote", _longtext()),
    Column("contactnote", String(255)),
    Column("sort1", String(80)),
    Column("sort2", String(80)),
    Column("altcontactfirstname", String(255)),
    Column("altcontactsurname", String(255)),
    Column("altcontactaddress1", String(255)),
    Column("altcontactaddress2", String(255)),
    Column("altcontactaddress3", String(255)),
    Column("altcontactstate", _mediumtext()),
    Column("altcontactzipcode", String(50)),
    Column("altcontactcountry", _mediumtext()),
    Column("altcontactphone", String(50)),
    Column("smsalertnumber", String(50)),
    Column("privacy", Integer),
    Column("extended_attributes", _mediumtext()),
    Column("gdpr_proc_consent", DateTime),
    Column("primary_contact_method", String(45)),
    Column("lang", String(25)),
    PrimaryKeyConstraint("verification_token", "borrowernumber"),
    _ix(
        "borrower_modifications",
        "verification_token",
        "verification_token",
        mysql_length={"verification_token": 191},
    ),
    _ix("borrower_modifications", "borrowernumber", "borrowernumber"),
    on_update=("timestamp",),
)

borrower_debarments = _table(
    "borrower_debarments",
    Column("borrower_debarment_id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("expiration", Date),
    Column("type", String(50), nullable=False),
    Column("comment", _mediumtext()),
    Column("manager_id", Integer),
    _touched("created"),
    Column("updated", _timestamp()),
    _ix("borrower_debarments", "borrowernumber", "borrowernumber"),
    _ix("borrower_debarments", "borrower_debarments_ibfk_2", "type"),
    _borrower_fk("borrower_debarments_ibfk_1", "borrowernumber"),
    on_update=("created",),
)

patron_consent = _table(
    "patron_consent",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("type", _tinytext()),
    Column("given_on", DateTime),
    Column("refused_on", DateTime),
    _ix("patron_consent", "borrowernumber", "borrowernumber"),
    _borrower_fk("patron_consent_ibfk_1", "borrowernumber"),
)

illrequests = _table(
    "illrequests",
    Column("illrequest_id", _ubigint(), primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer),
    Column("managedby", Integer),
    Column("biblio_id", Integer),
    Column("deleted_biblio_id", Integer),
    Column("due_date", DateTime),
    Column("branchcode", String(50), nullable=False),
    Column("status", String(50)),
    Column("status_alias", String(80)),
    Column("placed", Date),
    Column("replied", Date),
    _touched("updated"),
    Column("completed", Date),
    Column("medium", String(30)),
    Column("accessurl", String(500)),
    Column("cost", String(20)),
    Column("price_paid", String(20)),
    Column("notesopac", _mediumtext()),
    Column("notesstaff", _mediumtext()),
    Column("orderid", String(50)),
    Column("backend", String(20)),
    Column("batch_id", Integer),
    _ix("illrequests", "illrequests_bnfk", "borrowernumber"),
    _ix("illrequests", "illrequests_bcfk_2", "branchcode"),
    _ix("illrequests", "illrequests_safk", "status_alias"),
    _ix("illrequests", "illrequests_bibfk", "biblio_id"),
    _ix("illrequests", "illrequests_ibfk", "batch_id"),
    _ix("illrequests", "illrequests_manfk", "managedby"),
    _fk(
        "illrequests_bcfk_2",
        "branchcode",
        "branches.branchcode",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "illrequests_bibfk",
        "biblio_id",
        "biblio.biblionumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _borrower_fk("illrequests_bnfk", "borrowernumber", ondelete="SET NULL"),
    _borrower_fk("illrequests_manfk", "managedby", ondelete="SET NULL"),
    on_update=("updated",),
)

illcomments = _table(
    "illcomments",
    Column("illcomment_id", Integer, primary_key=True, autoincrement=True),
    Column("illrequest_id", _ubigint(), nullable=False),
    Column("borrowernumber", Integer),
    Column("comment", Text),
    Column("timestamp", _timestamp(), nullable=False, server_default=_now()),
    _ix("illcomments", "illcomments_bnfk", "borrowernumber"),
    _ix("illcomments", "illcomments_ifk", "illrequest_id"),
    _borrower_fk("illcomments_bnfk", "borrowernumber"),
    _fk(
        "illcomments_ifk",
        "illrequest_id",
        "illrequests.illrequest_id",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
)

suggestions = _table(
    "suggestions",
    Column("suggestionid", Integer, primary_key=True, autoincrement=True),
    Column("suggestedby", Integer),
    Column("suggesteddate", Date, nullable=False),
    Column("managedby", Integer),
    Column("manageddate", Date),
    Column("acceptedby", Integer),
    Column("accepteddate", Date),
    Column("rejectedby", Integer),
    Column("rejecteddate", Date),
    Column("lastmodificationby", Integer),
    Column("lastmodificationdate", Date),
    Column("STATUS", String(10), nullable=False, server_default=""),
    Column("archived", _tinyint(1), nullable=False, server_default=_zero()),
    Column("note", _longtext()),
    Column("staff_note", _longtext()),
    Column("author", String(80)),
    Column("title", String(255)),
    Column("copyrightdate", SmallInteger),
    Column("publishercode", String(255)),
    _touched("date"),
    Column("volumedesc", String(255)),
    Column("publicationyear", SmallInteger, server_default=_zero()),
    Column("place", String(255)),
    Column("isbn", String(30)),
    Column("biblionumber", Integer),
    Column("reason", _mediumtext()),
    Column("patronreason", _mediumtext()),
    Column("budgetid", Integer),
    Column("branchcode", String(10)),
    Column("collectiontitle", _mediumtext()),
    Column("itemtype", String(30)),
    Column("quantity", SmallInteger),
    Column("currency", String(10)),
    Column("price", Numeric(28, 6)),
    Column("total", Numeric(28, 6)),
    _ix("suggestions", "suggestedby", "suggestedby"),
    _ix("suggestions", "managedby", "managedby"),
    _ix("suggestions", "acceptedby", "acceptedby"),
    _ix("suggestions", "rejectedby", "rejectedby"),
    _ix("suggestions", "biblionumber", "biblionumber"),
    _ix("suggestions", "budgetid", "budgetid"),
    _ix("suggestions", "branchcode", "branchcode"),
    _ix("suggestions", "status", "STATUS"),
    _ix("suggestions", "suggestions_ibfk_lastmodificationby", "lastmodificationby"),
    _borrower_fk("suggestions_ibfk_acceptedby", "acceptedby", ondelete="SET NULL"),
    _fk(
        "suggestions_ibfk_biblionumber",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "suggestions_ibfk_branchcode",
        "branchcode",
        "branches.branchcode",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _borrower_fk("suggestions_ibfk_lastmodificationby", "lastmodificationby", ondelete="SET NULL"),
    _borrower_fk("suggestions_ibfk_managedby", "managedby", ondelete="SET NULL"),
    _borrower_fk("suggestions_ibfk_rejectedby", "rejectedby", ondelete="SET NULL"),
    _borrower_fk("suggestions_ibfk_suggestedby", "suggestedby", ondelete="SET NULL"),
    on_update=("date",),
)

article_requests = _table(
    "article_requests",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("biblionumber", Integer, nullable=False),
    Column("itemnumber", Integer),
    Column("branchcode", String(10)),
    Column("title", _mediumtext()),
    Column("author", _mediumtext()),
    Column("volume", _mediumtext()),
    Column("issue", _mediumtext()),
    Column("date", _mediumtext()),
    Column("pages", _mediumtext()),
    Column("chapters", _mediumtext()),
    Column("patron_notes", _mediumtext()),
    Column(
        "status",
        Enum(
            "REQUESTED",
            "PENDING",
            "PROCESSING",
            "COMPLETED",
            "CANCELED",
            name="article_requests_status",
        ),
        nullable=False,
        server_default="REQUESTED",
    ),
    Column("notes", _mediumtext()),
    Column(
        "format",
        Enum("PHOTOCOPY", "SCAN", name="article_requests_format"),
        nullable=False,
        server_default="PHOTOCOPY",
    ),
    Column("urls", _mediumtext()),
    Column("cancellation_reason", String(80)),
    Column("debit_id", Integer),
    Column("created_on", _timestamp()),
    _touched("updated_on"),
    Column("toc_request", _tinyint(4), nullable=False, server_default=_zero()),
    _ix("article_requests", "borrowernumber", "borrowernumber"),
    _ix("article_requests", "biblionumber", "biblionumber"),
    _ix("article_requests", "itemnumber", "itemnumber"),
    _ix("article_requests", "branchcode", "branchcode"),
    _ix("article_requests", "debit_id", "debit_id"),
    _borrower_fk("article_requests_ibfk_1", "borrowernumber"),
    _fk(
        "article_requests_ibfk_2",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "article_requests_ibfk_3",
        "itemnumber",
        "items.itemnumber",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "article_requests_ibfk_4",
        "branchcode",
        "branches.branchcode",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    _fk(
        "article_requests_ibfk_5",
        "debit_id",
        "accountlines.accountlines_id",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
    on_update=("updated_on",),
)

bookings = _table(
    "bookings",
    Column("booking_id", Integer, primary_key=True, autoincrement=True),
    Column("patron_id", Integer, nullable=False, server_default=_zero()),
    Column("biblio_id", Integer, nullable=False, server_default=_zero()),
    Column("item_id", Integer),
    Column("pickup_library_id", String(10), nullable=False),
    Column("start_date", DateTime),
    Column("end_date", DateTime),
    Column("creation_date", _timestamp(), nullable=False, server_default=_now()),
    _touched("modification_date"),
    Column(
        "status",
        Enum("new", "cancelled", "completed", name="bookings_status"),
        nullable=False,
        server_default="new",
    ),
    Column("cancellation_reason", String(80)),
    _ix("bookings", "patron_id", "patron_id"),
    _ix("bookings", "biblio_id", "biblio_id"),
    _ix("bookings", "item_id", "item_id"),
    _ix("bookings", "bookings_ibfk_4", "pickup_library_id"),
    _borrower_fk("bookings_ibfk_1", "patron_id"),
    _fk(
        "bookings_ibfk_2",
        "biblio_id",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk("bookings_ibfk_3", "item_id", "items.itemnumber", ondelete="CASCADE", onupdate="CASCADE"),
    _fk(
        "bookings_ibfk_4",
        "pickup_library_id",
        "branches.branchcode",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    on_update=("modification_date",),
)

recalls = _table(
    "recalls",
    Column("recall_id", Integer, primary_key=True, autoincrement=True),
    Column("patron_id", Integer, nullable=False, server_default=_zero()),
    Column("created_date", DateTime),
    Column("biblio_id", Integer, nullable=False),
    Column("pickup_library_id", String(10)),
    Column("completed_date", DateTime),
    Column("notes", _mediumtext()),
    Column("priority", SmallInteger),
    Column(
        "status",
        Enum(
            "requested",
            "overdue",
            "waiting",
            "in_transit",
            "cancelled",
            "expired",
            "fulfilled",
            name="recalls_status",
        ),
        server_default="requested",
    ),
    _touched(),
    Column("item_id", Integer),
    Column("waiting_date", DateTime),
    Column("expiration_date", DateTime),
    Column("completed", _tinyint(1), nullable=False, server_default=_zero()),
    Column("item_level", _tinyint(1), nullable=False, server_default=_zero()),
    _ix("recalls", "recalls_ibfk_1", "patron_id"),
    _ix("recalls", "recalls_ibfk_2", "biblio_id"),
    _ix("recalls", "recalls_ibfk_3", "item_id"),
    _ix("recalls", "recalls_ibfk_4", "pickup_library_id"),
    _borrower_fk("recalls_ibfk_1", "patron_id"),
    _fk(
        "recalls_ibfk_2", "biblio_id", "biblio.biblionumber", ondelete="CASCADE", onupdate="CASCADE"
    ),
    _fk("recalls_ibfk_3", "item_id", "items.itemnumber", ondelete="CASCADE", onupdate="CASCADE"),
    _fk(
        "recalls_ibfk_4",
        "pickup_library_id",
        "branches.branchcode",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    comment="Information related to recalls in Koha",
    on_update=("timestamp",),
)

reviews = _table(
    "reviews",
    Column("reviewid", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer),
    Column("biblionumber", Integer),
    Column("review", _mediumtext()),
    Column("approved", _tinyint(4), server_default=_zero()),
    Column("datereviewed", DateTime),
    _ix("reviews", "reviews_ibfk_1", "borrowernumber"),
    _ix("reviews", "reviews_ibfk_2", "biblionumber"),
    _borrower_fk("reviews_ibfk_1", "borrowernumber", ondelete="SET NULL"),
    _fk(
        "reviews_ibfk_2",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
)

tags_all = _table(
    "tags_all",
    Column("tag_id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer),
    Column("biblionumber", Integer, nullable=False),
    Column("term", _binary_varchar(191), nullable=False),
    Column("language", Integer),
    Column("date_created", DateTime, nullable=False),
    _ix("tags_all", "tags_borrowers_fk_1", "borrowernumber"),
    _ix("tags_all", "tags_biblionumber_fk_1", "biblionumber"),
    _fk(
        "tags_biblionumber_fk_1",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _borrower_fk("tags_borrowers_fk_1", "borrowernumber", ondelete="SET NULL"),
)

ratings = _table(
    "ratings",
    Column("borrowernumber", Integer, primary_key=True, autoincrement=False),
    Column("biblionumber", Integer, primary_key=True, autoincrement=False),
    Column("rating_value", _tinyint(1), nullable=False),
    Column("timestamp", _timestamp(), nullable=False, server_default=_now()),
    _ix("ratings", "ratings_ibfk_2", "biblionumber"),
    _borrower_fk("ratings_ibfk_1", "borrowernumber"),
    _fk(
        "ratings_ibfk_2",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
)

linktracker = _table(
    "linktracker",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("biblionumber", Integer),
    Column("itemnumber", Integer),
    Column("borrowernumber", Integer),
    Column("url", _mediumtext()),
    Column("timeclicked", DateTime),
    _ix("linktracker", "bibidx", "biblionumber"),
    _ix("linktracker", "itemidx", "itemnumber"),
    _ix("linktracker", "borridx", "borrowernumber"),
    _ix("linktracker", "dateidx", "timeclicked"),
    _fk(
        "linktracker_biblio_ibfk",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
    _borrower_fk(
        "linktracker_borrower_ibfk", "borrowernumber", ondelete="SET NULL", onupdate="SET NULL"
    ),
    _fk(
        "linktracker_item_ibfk",
        "itemnumber",
        "items.itemnumber",
        ondelete="SET NULL",
        onupdate="SET NULL",
    ),
)

checkout_renewals = _table(
    "checkout_renewals",
    Column("renewal_id", Integer, primary_key=True, autoincrement=True),
    Column("checkout_id", Integer),
    Column("renewer_id", Integer),
    Column("seen", _tinyint(1), server_default=_zero()),
    Column("interface", String(16), nullable=False),
    Column("timestamp", _timestamp(), nullable=False, server_default=_now()),
    Column(
        "renewal_type",
        Enum("Automatic", "Manual", name="checkout_renewals_renewal_type"),
        nullable=False,
        server_default="Manual",
    ),
    _ix("checkout_renewals", "renewer_id", "renewer_id"),
    _borrower_fk("renewals_renewer_id", "renewer_id", ondelete="SET NULL"),
)

club_enrollments = _table(
    "club_enrollments",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("club_id", Integer, nullable=False),
    Column("borrowernumber", Integer, nullable=False),
    Column("date_enrolled", _timestamp(), nullable=False, server_default=_now()),
    Column("date_canceled", _timestamp()),
    Column("date_created", _timestamp()),
    Column("date_updated", _timestamp()),
    Column("branchcode", String(10)),
    _ix("club_enrollments", "club_id", "club_id"),
    _ix("club_enrollments", "borrowernumber", "borrowernumber"),
    _ix("club_enrollments", "branchcode", "branchcode"),
    _borrower_fk("club_enrollments_ibfk_2", "borrowernumber"),
    _fk(
        "club_enrollments_ibfk_3",
        "branchcode",
        "branches.branchcode",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
)

# ``borrowernumber`` points at ``housebound_profile`` (keyed by borrowernumber), which is not
# modelled: here it is a keyless reference to the patron who receives the visit.
housebound_visit = _table(
    "housebound_visit",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("appointment_date", Date),
    Column("day_segment", String(10)),
    Column("chooser_brwnumber", Integer),
    Column("deliverer_brwnumber", Integer),
    _ix("housebound_visit", "houseboundvisit_bnfk", "borrowernumber"),
    _ix("housebound_visit", "houseboundvisit_bnfk_1", "chooser_brwnumber"),
    _ix("housebound_visit", "houseboundvisit_bnfk_2", "deliverer_brwnumber"),
    _borrower_fk("houseboundvisit_bnfk_1", "chooser_brwnumber"),
    _borrower_fk("houseboundvisit_bnfk_2", "deliverer_brwnumber"),
)

return_claims = _table(
    "return_claims",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("itemnumber", Integer, nullable=False),
    Column("issue_id", Integer),
    Column("borrowernumber", Integer, nullable=False),
    Column("notes", _mediumtext()),
    Column("created_on", _timestamp()),
    Column("created_by", Integer),
    Column("updated_on", _timestamp()),
    Column("updated_by", Integer),
    Column("resolution", String(80)),
    Column("resolved_on", _timestamp()),
    Column("resolved_by", Integer),
    UniqueConstraint("itemnumber", "issue_id", name="item_issue"),
    _ix("return_claims", "itemnumber", "itemnumber"),
    _ix("return_claims", "rc_borrowers_ibfk", "borrowernumber"),
    _ix("return_claims", "rc_created_by_ibfk", "created_by"),
    _ix("return_claims", "rc_updated_by_ibfk", "updated_by"),
    _ix("return_claims", "rc_resolved_by_ibfk", "resolved_by"),
    _borrower_fk("rc_borrowers_ibfk", "borrowernumber"),
    _borrower_fk("rc_created_by_ibfk", "created_by", ondelete="SET NULL"),
    _fk("rc_items_ibfk", "itemnumber", "items.itemnumber", ondelete="CASCADE", onupdate="CASCADE"),
    _borrower_fk("rc_resolved_by_ibfk", "resolved_by", ondelete="SET NULL"),
    _borrower_fk("rc_updated_by_ibfk", "updated_by", ondelete="SET NULL"),
)
# Koha's ``updated_on timestamp NULL DEFAULT NULL ON UPDATE current_timestamp()``.
event.listen(
    return_claims,
    "after_create",
    DDL(
        "ALTER TABLE `return_claims` MODIFY `updated_on` TIMESTAMP NULL DEFAULT NULL "
        "ON UPDATE CURRENT_TIMESTAMP"
    ).execute_if(dialect=_MYSQL),
)

problem_reports = _table(
    "problem_reports",
    Column("reportid", Integer, primary_key=True, autoincrement=True),
    Column("title", String(40), nullable=False, server_default=""),
    Column("content", Text, nullable=False),
    Column("borrowernumber", Integer, nullable=False, server_default=_zero()),
    Column("branchcode", String(10), nullable=False, server_default=""),
    Column("username", String(75)),
    Column("problempage", Text),
    Column(
        "recipient",
        Enum("admin", "library", name="problem_reports_recipient"),
        nullable=False,
        server_default="library",
    ),
    Column("created_on", _timestamp(), nullable=False, server_default=_now()),
    Column("status", String(6), nullable=False, server_default="New"),
    _ix("problem_reports", "problem_reports_ibfk1", "borrowernumber"),
    _ix("problem_reports", "problem_reports_ibfk2", "branchcode"),
    _borrower_fk("problem_reports_ibfk1", "borrowernumber"),
    _fk(
        "problem_reports_ibfk2",
        "branchcode",
        "branches.branchcode",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
)

tickets = _table(
    "tickets",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "source",
        Enum("catalog", name="tickets_source"),
        nullable=False,
        server_default="catalog",
    ),
    Column("reporter_id", Integer, nullable=False, server_default=_zero()),
    Column("reported_date", _timestamp(), nullable=False, server_default=_now()),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(80)),
    Column("assignee_id", Integer),
    Column("resolver_id", Integer),
    Column("resolved_date", DateTime),
    Column("biblio_id", Integer),
    _ix("tickets", "tickets_ibfk_1", "reporter_id"),
    _ix("tickets", "tickets_ibfk_2", "resolver_id"),
    _ix("tickets", "tickets_ibfk_3", "biblio_id"),
    _ix("tickets", "tickets_ibfk_4", "assignee_id"),
    _borrower_fk("tickets_ibfk_1", "reporter_id"),
    _borrower_fk("tickets_ibfk_2", "resolver_id"),
    _fk(
        "tickets_ibfk_3", "biblio_id", "biblio.biblionumber", ondelete="CASCADE", onupdate="CASCADE"
    ),
    _borrower_fk("tickets_ibfk_4", "assignee_id"),
)

messages = _table(
    "messages",
    Column("message_id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("branchcode", String(10)),
    Column("message_type", String(1), nullable=False),
    Column("message", _mediumtext(), nullable=False),
    Column("message_date", _timestamp(), nullable=False, server_default=_now()),
    Column("manager_id", Integer),
    Column("patron_read_date", _timestamp()),
    _ix("messages", "messages_ibfk_1", "manager_id"),
    _ix("messages", "messages_borrowernumber", "borrowernumber"),
    _borrower_fk("messages_borrowernumber", "borrowernumber"),
    _borrower_fk("messages_ibfk_1", "manager_id", ondelete="SET NULL", onupdate=None),
)

patronimage = _table(
    "patronimage",
    Column("borrowernumber", Integer, primary_key=True, autoincrement=False),
    Column("mimetype", String(15), nullable=False),
    Column("imagefile", _mediumblob(), nullable=False),
    _borrower_fk("patronimage_fk1", "borrowernumber"),
)

borrower_files = _table(
    "borrower_files",
    Column("file_id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("file_type", String(255), nullable=False),
    Column("file_description", String(255)),
    Column("file_content", _longblob(), nullable=False),
    Column("date_uploaded", _timestamp(), nullable=False, server_default=_now()),
    _ix("borrower_files", "borrowernumber", "borrowernumber"),
    _borrower_fk("borrower_files_ibfk_1", "borrowernumber"),
)

# Koha's "pseudonymized" statistics: one row per transaction, the patron replaced by a bcrypt
# hash of the borrowernumber under one site-wide key, so one patron keeps one pseudonym for
# ever, next to quasi-identifiers (city, zipcode, sex, category, enrolment date).
pseudonymized_transactions = _table(
    "pseudonymized_transactions",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hashed_borrowernumber", String(60), nullable=False),
    Column("has_cardnumber", _tinyint(1), nullable=False, server_default=_zero()),
    Column("title", _longtext()),
    Column("city", _longtext()),
    Column("state", _mediumtext()),
    Column("zipcode", String(25)),
    Column("country", _mediumtext()),
    Column("branchcode", String(10), nullable=False, server_default=""),
    Column("categorycode", String(10), nullable=False, server_default=""),
    Column("dateenrolled", Date),
    Column("sex", String(1)),
    Column("sort1", String(80)),
    Column("sort2", String(80)),
    Column("datetime", DateTime),
    Column("transaction_branchcode", String(10)),
    Column("transaction_type", String(16)),
    Column("itemnumber", Integer),
    Column("itemtype", String(10)),
    Column("holdingbranch", String(10)),
    Column("homebranch", String(10)),
    Column("location", String(80)),
    Column("itemcallnumber", String(255)),
    Column("ccode", String(80)),
    _ix("pseudonymized_transactions", "pseudonymized_transactions_ibfk_1", "categorycode"),
    _ix("pseudonymized_transactions", "pseudonymized_transactions_borrowers_ibfk_2", "branchcode"),
    _ix(
        "pseudonymized_transactions",
        "pseudonymized_transactions_borrowers_ibfk_3",
        "transaction_branchcode",
    ),
    _ix("pseudonymized_transactions", "pseudonymized_transactions_items_ibfk_4", "itemnumber"),
    _ix("pseudonymized_transactions", "pseudonymized_transactions_ibfk_5", "transaction_type"),
    _ix("pseudonymized_transactions", "pseudonymized_transactions_ibfk_6", "datetime"),
)

# --- the rest of Koha's patron-linked tables (issue 3) ------------------------------------------
#
# Registration extras that live as long as the patron (alerts, extended attributes, messaging
# preferences, password history, discharges, housebound profile and role, staff patron lists,
# serial routing, lists and their shares), transactional records with their own clocks
# (background jobs, password recovery, card printing batches, curbside pickups, offline
# circulation, quotas, club holds, hold groups, ILL batches), and the holds queue Koha rebuilds.

alert = _table(
    "alert",
    Column("alertid", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False, server_default=_zero()),
    Column("type", String(10), nullable=False, server_default=""),
    Column("externalid", String(20), nullable=False, server_default=""),
    _ix("alert", "borrowernumber", "borrowernumber"),
    _ix("alert", "type", "type", "externalid"),
    _borrower_fk("alert_ibfk_1", "borrowernumber"),
)

background_jobs = _table(
    "background_jobs",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("status", String(32)),
    Column("progress", _uint()),
    Column("size", _uint()),
    Column("borrowernumber", Integer),
    Column("type", String(64)),
    Column("queue", String(191), nullable=False, server_default="default"),
    Column("data", _longtext()),
    Column("context", _longtext()),
    Column("enqueued_on", DateTime),
    Column("started_on", DateTime),
    Column("ended_on", DateTime),
    _ix("background_jobs", "borrowernumber", "borrowernumber"),
    _ix("background_jobs", "queue", "queue"),
    _ix("background_jobs", "status", "status"),
)

borrower_attributes = _table(
    "borrower_attributes",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("code", String(64), nullable=False),
    Column("attribute", String(255)),
    _ix("borrower_attributes", "borrowernumber", "borrowernumber"),
    _ix("borrower_attributes", "code_attribute", "code", "attribute"),
    _borrower_fk("borrower_attributes_ibfk_1", "borrowernumber"),
)

borrower_message_preferences = _table(
    "borrower_message_preferences",
    Column("borrower_message_preference_id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer),
    Column("categorycode", String(10)),
    Column("message_attribute_id", Integer, server_default=_zero()),
    Column("days_in_advance", Integer),
    Column("wants_digest", _tinyint(1), nullable=False, server_default=_zero()),
    _ix("borrower_message_preferences", "borrowernumber", "borrowernumber"),
    _ix("borrower_message_preferences", "categorycode", "categorycode"),
    _borrower_fk("borrower_message_preferences_ibfk_1", "borrowernumber"),
    _fk(
        "borrower_message_preferences_ibfk_3",
        "categorycode",
        "categories.categorycode",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
)

borrower_password_history = _table(
    "borrower_password_history",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("password", String(128), nullable=False),
    Column("created_on", _timestamp(), nullable=False, server_default=_now()),
    _ix("borrower_password_history", "borrower_password_history_ibfk_1", "borrowernumber"),
    _borrower_fk("borrower_password_history_ibfk_1", "borrowernumber"),
)

# No foreign key in Koha: ``borrowernumber`` is a keyless reference.
borrower_password_recovery = _table(
    "borrower_password_recovery",
    Column("borrowernumber", Integer, primary_key=True, autoincrement=False),
    Column("uuid", String(128), nullable=False),
    Column("valid_until", _timestamp(), nullable=False, server_default=_now()),
)

club_holds = _table(
    "club_holds",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("club_id", Integer, nullable=False),
    Column("biblio_id", Integer, nullable=False),
    Column("item_id", Integer),
    Column("date_created", _timestamp(), nullable=False, server_default=_now()),
    _ix("club_holds", "clubs_holds_ibfk_1", "club_id"),
    _ix("club_holds", "clubs_holds_ibfk_2", "biblio_id"),
    _ix("club_holds", "clubs_holds_ibfk_3", "item_id"),
    _fk(
        "clubs_holds_ibfk_2",
        "biblio_id",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "clubs_holds_ibfk_3", "item_id", "items.itemnumber", ondelete="CASCADE", onupdate="CASCADE"
    ),
)

club_holds_to_patron_holds = _table(
    "club_holds_to_patron_holds",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("club_hold_id", Integer, nullable=False),
    Column("patron_id", Integer, nullable=False),
    Column("hold_id", Integer),
    Column(
        "error_code",
        Enum(
            "damaged",
            "ageRestricted",
            "itemAlreadyOnHold",
            "tooManyHoldsForThisRecord",
            "tooManyReservesToday",
            "tooManyReserves",
            "notReservable",
            "cannotReserveFromOtherBranches",
            "libraryNotFound",
            "libraryNotPickupLocation",
            "cannotBeTransferred",
            "noReservesAllowed",
            name="club_holds_to_patron_holds_error_code",
        ),
    ),
    Column("error_message", String(100)),
    _ix("club_holds_to_patron_holds", "clubs_holds_paton_holds_ibfk_1", "club_hold_id"),
    _ix("club_holds_to_patron_holds", "clubs_holds_paton_holds_ibfk_2", "patron_id"),
    _ix("club_holds_to_patron_holds", "clubs_holds_paton_holds_ibfk_3", "hold_id"),
    _fk(
        "clubs_holds_paton_holds_ibfk_1",
        "club_hold_id",
        "club_holds.id",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _borrower_fk("clubs_holds_paton_holds_ibfk_2", "patron_id"),
    _fk(
        "clubs_holds_paton_holds_ibfk_3",
        "hold_id",
        "reserves.reserve_id",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
)

creator_batches = _table(
    "creator_batches",
    Column("label_id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", Integer, nullable=False, server_default=_one()),
    Column("description", _mediumtext()),
    Column("item_number", Integer),
    Column("borrower_number", Integer),
    _touched("timestamp"),
    Column("branch_code", String(10), nullable=False, server_default="NB"),
    Column("creator", String(15), nullable=False, server_default="Labels"),
    _ix("creator_batches", "branch_fk_constraint", "branch_code"),
    _ix("creator_batches", "item_fk_constraint", "item_number"),
    _ix("creator_batches", "borrower_fk_constraint", "borrower_number"),
    _borrower_fk("creator_batches_ibfk_1", "borrower_number"),
    _fk(
        "creator_batches_ibfk_3",
        "item_number",
        "items.itemnumber",
        ondelete="CASCADE",
    ),
    on_update=("timestamp",),
)

curbside_pickups = _table(
    "curbside_pickups",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("branchcode", String(10), nullable=False),
    Column("scheduled_pickup_datetime", DateTime, nullable=False),
    Column("staged_datetime", DateTime),
    Column("staged_by", Integer),
    Column("arrival_datetime", DateTime),
    Column("delivered_datetime", DateTime),
    Column("delivered_by", Integer),
    Column("notes", Text),
    _ix("curbside_pickups", "branchcode", "branchcode"),
    _ix("curbside_pickups", "borrowernumber", "borrowernumber"),
    _ix("curbside_pickups", "staged_by", "staged_by"),
    _fk(
        "curbside_pickups_ibfk_1",
        "branchcode",
        "branches.branchcode",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _borrower_fk("curbside_pickups_ibfk_2", "borrowernumber"),
    _borrower_fk("curbside_pickups_ibfk_3", "staged_by", ondelete="SET NULL"),
)

discharges = _table(
    "discharges",
    Column("discharge_id", Integer, primary_key=True, autoincrement=True),
    Column("borrower", Integer),
    Column("needed", _timestamp()),
    Column("validated", _timestamp()),
    _ix("discharges", "borrower_discharges_ibfk1", "borrower"),
    _borrower_fk("borrower_discharges_ibfk1", "borrower"),
)

# Koha's holds queue: rebuilt from the open holds by build_holds_queue.pl (or in real time).
hold_fill_targets = _table(
    "hold_fill_targets",
    Column("borrowernumber", Integer, nullable=False),
    Column("biblionumber", Integer, nullable=False),
    Column("itemnumber", Integer, primary_key=True, autoincrement=False),
    Column("source_branchcode", String(10)),
    Column("item_level_request", _tinyint(4), nullable=False, server_default=_zero()),
    Column("reserve_id", Integer),
    _ix("hold_fill_targets", "bib_branch", "biblionumber", "source_branchcode"),
    _ix("hold_fill_targets", "hold_fill_targets_ibfk_1", "borrowernumber"),
    _borrower_fk("hold_fill_targets_ibfk_1", "borrowernumber"),
)

tmp_holdsqueue = _table(
    "tmp_holdsqueue",
    Column("biblionumber", Integer),
    Column("itemnumber", Integer, primary_key=True, autoincrement=False),
    Column("barcode", String(20)),
    Column("surname", _longtext(), nullable=False),
    Column("firstname", _mediumtext()),
    Column("phone", _mediumtext()),
    Column("borrowernumber", Integer, nullable=False),
    Column("cardnumber", String(32)),
    Column("reservedate", Date),
    Column("title", _longtext()),
    Column("itemcallnumber", String(255)),
    Column("holdingbranch", String(10)),
    Column("pickbranch", String(10)),
    Column("notes", _mediumtext()),
    Column("item_level_request", _tinyint(4), nullable=False, server_default=_zero()),
    _touched("timestamp"),
    _ix("tmp_holdsqueue", "tmp_holdsqueue_ibfk_3", "borrowernumber"),
    _borrower_fk("tmp_holdsqueue_ibfk_3", "borrowernumber"),
    on_update=("timestamp",),
)

hold_groups = _table(
    "hold_groups",
    Column("hold_group_id", _uint(), primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer),
    Column("visual_hold_group_id", Integer),
    _ix("hold_groups", "hold_groups_borrowernumber", "borrowernumber"),
    _borrower_fk("hold_groups_ibfk_1", "borrowernumber", onupdate=None),
)

housebound_profile = _table(
    "housebound_profile",
    Column("borrowernumber", Integer, primary_key=True, autoincrement=False),
    Column("day", _mediumtext(), nullable=False),
    Column("frequency", _mediumtext(), nullable=False),
    Column("fav_itemtypes", _mediumtext()),
    Column("fav_subjects", _mediumtext()),
    Column("fav_authors", _mediumtext()),
    Column("referral", _mediumtext()),
    Column("notes", _mediumtext()),
    _borrower_fk("housebound_profile_bnfk", "borrowernumber"),
)

housebound_role = _table(
    "housebound_role",
    Column("borrowernumber_id", Integer, primary_key=True, autoincrement=False),
    Column("housebound_chooser", _tinyint(1), nullable=False, server_default=_zero()),
    Column("housebound_deliverer", _tinyint(1), nullable=False, server_default=_zero()),
    _borrower_fk("houseboundrole_bnfk", "borrowernumber_id"),
)

illbatches = _table(
    "illbatches",
    Column("ill_batch_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("backend", String(20), nullable=False),
    Column("patron_id", Integer),
    Column("library_id", String(50)),
    Column("status_code", String(20)),
    UniqueConstraint("name", name="u_illbatches__name"),
    _ix("illbatches", "illbatches_bnfk", "patron_id"),
    _ix("illbatches", "illbatches_bcfk", "library_id"),
    _borrower_fk("illbatches_bnfk", "patron_id", ondelete="SET NULL"),
    _fk(
        "illbatches_bcfk",
        "library_id",
        "branches.branchcode",
        ondelete="SET NULL",
        onupdate="CASCADE",
    ),
)

patron_list_patrons = _table(
    "patron_list_patrons",
    Column("patron_list_patron_id", Integer, primary_key=True, autoincrement=True),
    Column("patron_list_id", Integer, nullable=False),
    Column("borrowernumber", Integer, nullable=False),
    _ix("patron_list_patrons", "patron_list_id", "patron_list_id"),
    _ix("patron_list_patrons", "borrowernumber", "borrowernumber"),
    _borrower_fk("patron_list_patrons_ibfk_2", "borrowernumber"),
)

patron_quota = _table(
    "patron_quota",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("description", _longtext(), nullable=False),
    Column("patron_id", Integer, nullable=False),
    Column("allocation", Integer, nullable=False, server_default=_zero()),
    Column("used", Integer, nullable=False, server_default=_zero()),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    _ix("patron_quota", "patron_quota_ibfk_1", "patron_id"),
    _borrower_fk("patron_quota_ibfk_1", "patron_id"),
)

patron_quota_usage = _table(
    "patron_quota_usage",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patron_quota_id", Integer, nullable=False),
    Column("issue_id", Integer),
    Column("patron_id", Integer, nullable=False),
    Column("type", Enum("ISSUE", "RENEW", name="patron_quota_usage_type"), nullable=False),
    Column("creation_date", _timestamp(), nullable=False, server_default=_now()),
    _ix("patron_quota_usage", "patron_quota_usage_ibfk_1", "patron_quota_id"),
    _ix("patron_quota_usage", "patron_quota_usage_ibfk_2", "patron_id"),
    _fk(
        "patron_quota_usage_ibfk_1",
        "patron_quota_id",
        "patron_quota.id",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _borrower_fk("patron_quota_usage_ibfk_2", "patron_id"),
)

# No foreign key in Koha: a card number and a staff login, as the offline client sent them.
pending_offline_operations = _table(
    "pending_offline_operations",
    Column("operationid", Integer, primary_key=True, autoincrement=True),
    Column("userid", String(30), nullable=False),
    Column("branchcode", String(10), nullable=False),
    Column("timestamp", _timestamp(), nullable=False, server_default=_now()),
    Column("action", String(10), nullable=False),
    Column("barcode", String(20)),
    Column("cardnumber", String(32)),
    Column("amount", Numeric(28, 6)),
)

subscriptionroutinglist = _table(
    "subscriptionroutinglist",
    Column("routingid", Integer, primary_key=True, autoincrement=True),
    Column("borrowernumber", Integer, nullable=False),
    Column("ranking", Integer),
    Column("subscriptionid", Integer, nullable=False),
    UniqueConstraint("subscriptionid", "borrowernumber", name="subscriptionid"),
    _ix("subscriptionroutinglist", "subscriptionroutinglist_ibfk_1", "borrowernumber"),
    _borrower_fk("subscriptionroutinglist_ibfk_1", "borrowernumber"),
)

# No foreign key in Koha: ``owner`` is the staff member who uploaded the file.
uploaded_files = _table(
    "uploaded_files",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hashvalue", String(40), nullable=False),
    Column("filename", _mediumtext(), nullable=False),
    Column("dir", _mediumtext(), nullable=False),
    Column("filesize", Integer),
    _touched("dtcreated"),
    Column("uploadcategorycode", Text),
    Column("owner", Integer),
    Column("public", _tinyint(4)),
    Column("permanent", _tinyint(4)),
    on_update=("dtcreated",),
)

virtualshelves = _table(
    "virtualshelves",
    Column("shelfnumber", Integer, primary_key=True, autoincrement=True),
    Column("shelfname", String(255)),
    Column("owner", Integer),
    Column("public", _tinyint(1), nullable=False, server_default=_zero()),
    Column("sortfield", String(16), server_default="title"),
    _touched("lastmodified"),
    Column("created_on", DateTime, nullable=False),
    Column("allow_change_from_owner", _tinyint(1), server_default=_one()),
    Column("allow_change_from_others", _tinyint(1), server_default=_zero()),
    Column("allow_change_from_staff", _tinyint(1), server_default=_zero()),
    Column("allow_change_from_permitted_staff", _tinyint(1), server_default=_zero()),
    _ix("virtualshelves", "virtualshelves_ibfk_1", "owner"),
    _borrower_fk("virtualshelves_ibfk_1", "owner", ondelete="SET NULL", onupdate="SET NULL"),
    on_update=("lastmodified",),
)

virtualshelfshares = _table(
    "virtualshelfshares",
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("shelfnumber", Integer, nullable=False),
    Column("borrowernumber", Integer),
    Column("invitekey", String(10)),
    Column("sharedate", DateTime),
    _ix("virtualshelfshares", "virtualshelfshares_ibfk_1", "shelfnumber"),
    _ix("virtualshelfshares", "virtualshelfshares_ibfk_2", "borrowernumber"),
    _fk(
        "virtualshelfshares_ibfk_1",
        "shelfnumber",
        "virtualshelves.shelfnumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _borrower_fk(
        "virtualshelfshares_ibfk_2", "borrowernumber", ondelete="SET NULL", onupdate="SET NULL"
    ),
)

# Koha declares no primary key here; ``shelfnumber`` is the engine's batching key.
virtualshelfcontents = _table(
    "virtualshelfcontents",
    Column("shelfnumber", Integer, nullable=False, server_default=_zero()),
    Column("biblionumber", Integer, nullable=False, server_default=_zero()),
    _touched("dateadded"),
    Column("borrowernumber", Integer),
    _ix("virtualshelfcontents", "shelfnumber", "shelfnumber"),
    _ix("virtualshelfcontents", "biblionumber", "biblionumber"),
    _ix("virtualshelfcontents", "shelfcontents_ibfk_3", "borrowernumber"),
    _fk(
        "virtualshelfcontents_ibfk_1",
        "shelfnumber",
        "virtualshelves.shelfnumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _fk(
        "shelfcontents_ibfk_2",
        "biblionumber",
        "biblio.biblionumber",
        ondelete="CASCADE",
        onupdate="CASCADE",
    ),
    _borrower_fk(
        "shelfcontents_ibfk_3", "borrowernumber", ondelete="SET NULL", onupdate="SET NULL"
    ),
    on_update=("dateadded",),
)

# Columns of ``borrowers`` (and ``deletedborrowers``) that identify or describe a person, or
# hold free text staff or patrons typed about one. Anonymising a patron blanks these;
# everything else (category, branch, dates of enrolment and expiry, flags, privacy
# settings) is what aggregate statistics are allowed to keep.
PERSONAL_COLUMNS: tuple[str, ...] = (
    # identifiers and credentials
    "cardnumber",
    "userid",
    "password",
    "secret",
    "overdrive_auth_token",
    # names
    "surname",
    "firstname",
    "preferred_name",
    "middle_name",
    "title",
    "othernames",
    "initials",
    "pronouns",
    "sex",
    "dateofbirth",
    # primary address and contact
    "streetnumber",
    "streettype",
    "address",
    "address2",
    "city",
    "state",
    "zipcode",
    "country",
    "email",
    "phone",
    "mobile",
    "fax",
    "emailpro",
    "phonepro",
    "smsalertnumber",
    # alternate address
    "B_streetnumber",
    "B_streettype",
    "B_address",
    "B_address2",
    "B_city",
    "B_state",
    "B_zipcode",
    "B_country",
    "B_email",
    "B_phone",
    # guarantor / alternate contact
    "contactname",
    "contactfirstname",
    "contacttitle",
    "relationship",
    "altcontactfirstname",
    "altcontactsurname",
    "altcontactaddress1",
    "altcontactaddress2",
    "altcontactaddress3",
    "altcontactstate",
    "altcontactzipcode",
    "altcontactcountry",
    "altcontactphone",
    # free text and library-defined fields
    "borrowernotes",
    "opacnote",
    "contactnote",
    "debarredcomment",
    "sort1",
    "sort2",
)


def create_schema(engine: Engine) -> None:
    """Create every table that is missing; existing tables are left untouched."""
    metadata.create_all(engine, checkfirst=True)


def drop_schema(engine: Engine) -> None:
    """Drop every table of this module that exists, children before parents."""
    metadata.drop_all(engine, checkfirst=True)
