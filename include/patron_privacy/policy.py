"""The retention policy: the library's schedule, as data a board can read.

The policy file is the one place a library states how long it keeps what,
and why. It is validated in full before anything runs — every error found,
each with the file and the field path — because a typo in a window must stop
the run, not become a deletion. Its hash is written on every audit row so a
result can always be traced to the exact schedule that produced it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from patron_privacy import sources
from patron_privacy.engine import LEGAL_HOLD, Rule
from patron_privacy.thresholds import Thresholds
from patron_privacy.timebase import Window, library_zone, parse_duration

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "config" / "retention_policy.yaml"

ACTIONS = ("delete", "anonymize", "strip")


class PolicyError(ValueError):
    """Every problem found in a policy file, one per line, each with its field path."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


@dataclass(frozen=True)
class RuleSpec:
    category: str
    source: str
    window: Window
    action: str
    blockers: tuple[str, ...]
    basis: str
    why: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeptOnPurpose:
    """A table holding patron data that no rule changes, on purpose, and why."""

    source: str
    table: str
    reason: str


@dataclass(frozen=True)
class Policy:
    path: str
    version: str
    library_name: str
    timezone: str
    rules: tuple[RuleSpec, ...]
    source_options: dict = field(default_factory=dict)
    pseudonym_connection: str = "pseudonym_keys"
    # Tables the personal-data inventory finds that the library keeps on purpose.
    kept_on_purpose: tuple[KeptOnPurpose, ...] = ()

    def rules_for(self, source: str) -> list[Rule]:
        """Bind this source's rules to the connector's categories, ready for the engine."""
        catalog = sources.connector(source).categories
        return [
            Rule(
                category=catalog[r.category],
                window_text=r.window.text,
                cutoff_delta=r.window.delta,
                action=r.action,
                blockers=r.blockers,
                fields=r.fields,
            )
            for r in self.rules
            if r.source == source
        ]

    def options(self, source: str) -> dict:
        return dict(self.source_options.get(source) or {})

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(r.source for r in self.rules))


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _check_rule(i: int, raw, problems: list[str]) -> RuleSpec | None:
    where = f"rules[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping, got {type(raw).__name__}")
        return None
    known = {"category", "source", "window", "action", "blockers", "basis", "why", "fields"}
    for extra in sorted(set(raw) - known):
        problems.append(
            f"{where}.{extra}: unknown field (expected one of {', '.join(sorted(known))})"
        )
    source = raw.get("source")
    if source not in sources.SOURCES:
        problems.append(
            f"{where}.source: unknown source {source!r} (expected one of "
            f"{', '.join(sources.SOURCES)})"
        )
        return None
    catalog = sources.connector(source).categories
    name = raw.get("category")
    cat = catalog.get(name)
    if cat is None:
        problems.append(
            f"{where}.category: unknown category {name!r} for source {source} "
            f"(expected one of {', '.join(sorted(catalog))})"
        )
    window = None
    try:
        window = parse_duration(raw.get("window"))
    except ValueError as exc:
        problems.append(f"{where}.window: {exc}")
    action = raw.get("action")
    if action not in ACTIONS:
        problems.append(
            f"{where}.action: unknown action {action!r} (expected one of {', '.join(ACTIONS)})"
        )
    elif cat is not None and action not in cat.actions:
        problems.append(
            f"{where}.action: {action!r} is not possible for {name} "
            f"(possible: {', '.join(cat.actions)})"
        )
    fields = tuple(_as_list(raw.get("fields")))
    if action == "strip":
        if not fields:
            problems.append(f"{where}.fields: action strip needs the fields to strip")
        elif cat is not None:
            for j, f in enumerate(fields):
                if f not in cat.strippable:
                    problems.append(
                        f"{where}.fields[{j}]: {f!r} cannot be stripped from {name} "
                        f"(possible: {', '.join(cat.strippable)})"
                    )
    elif fields:
        problems.append(f"{where}.fields: only action strip takes fields")
    blockers = tuple(_as_list(raw.get("blockers")))
    if cat is not None:
        for j, b in enumerate(blockers):
            if b != LEGAL_HOLD and b not in cat.blockers:
                problems.append(
                    f"{where}.blockers[{j}]: unknown blocker {b!r} for {name} "
                    f"(possible: {', '.join([LEGAL_HOLD, *sorted(cat.blockers)])})"
                )
    texts_ok = True
    for text_field in ("basis", "why"):
        if not isinstance(raw.get(text_field), str) or not raw.get(text_field).strip():
            problems.append(f"{where}.{text_field}: required, the reason written out")
            texts_ok = False
    if cat is None or window is None or action not in ACTIONS or not texts_ok:
        return None
    # A legal hold always binds, whatever the file says: it is listed first.
    ordered = (LEGAL_HOLD, *(b for b in blockers if b != LEGAL_HOLD))
    return RuleSpec(
        category=name,
        source=source,
        window=window,
        action=action,
        blockers=ordered,
        basis=raw["basis"].strip(),
        why=raw["why"].strip(),
        fields=fields,
    )


_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


def _check_kept(raw, problems: list[str]) -> tuple[KeptOnPurpose, ...]:
    """The ``kept_on_purpose`` section: ``- {source, table, reason}``, every error with its path."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append("kept_on_purpose: expected a list of {source, table, reason}")
        return ()
    known = {"source", "table", "reason"}
    out: list[KeptOnPurpose] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(raw):
        where = f"kept_on_purpose[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping, got {type(entry).__name__}")
            continue
        for extra in sorted(set(entry) - known):
            problems.append(
                f"{where}.{extra}: unknown field (expected one of {', '.join(sorted(known))})"
            )
        ok = True
        source = entry.get("source")
        if source not in sources.SOURCES:
            problems.append(
                f"{where}.source: unknown source {source!r} (expected one of "
                f"{', '.join(sources.SOURCES)})"
            )
            ok = False
        table = entry.get("table")
        if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
            problems.append(
                f"{where}.table: expected a table name (schema.table allowed), got {table!r}"
            )
            ok = False
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where}.reason: required, the reason written out")
            ok = False
        if not ok:
            continue
        key = (source, table)
        if key in seen:
            problems.append(
                f"{where}.table: {table} is already kept on purpose (kept_on_purpose[{seen[key]}])"
            )
            continue
        seen[key] = i
        out.append(KeptOnPurpose(source=source, table=table, reason=" ".join(reason.split())))
    return tuple(out)


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    problems: list[str] = []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark else ""
        raise PolicyError(path, [f"{at}not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(data, dict):
        raise PolicyError(path, ["expected a mapping at the top level"])
    library = data.get("library") or {}
    tz = library.get("timezone")
    try:
        library_zone(tz)
    except (ValueError, TypeError):
        problems.append(f"library.timezone: unknown time zone {tz!r} (e.g. America/New_York)")
    if not library.get("name"):
        problems.append("library.name: required")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append("rules: expected a non-empty list of rules")
        raw_rules = []
    rules = [_check_rule(i, r, problems) for i, r in enumerate(raw_rules)]
    seen: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rules):
        if r is None:
            continue
        k = (r.source, r.category)
        if k in seen:
            problems.append(
                f"rules[{i}].category: {r.category} already has a rule (rules[{seen[k]}])"
            )
        seen[k] = i
    source_options = data.get("sources") or {}
    if not isinstance(source_options, dict):
        problems.append("sources: expected a mapping of source name to options")
        source_options = {}
    for name, opts in source_options.items():
        if name not in sources.SOURCES:
            problems.append(f"sources.{name}: unknown source")
            continue
        if opts is not None and not isinstance(opts, dict):
            problems.append(f"sources.{name}: expected a mapping of options")
            continue
        opts = dict(opts or {})
        # Every source takes the same validation thresholds: checked here, once, so a
        # typo never silently leaves a default in force (see ``thresholds``).
        _, bad = Thresholds.problems(opts.pop("validation", None))
        problems.extend(f"sources.{name}.{p}" for p in bad)
        problems.extend(f"sources.{name}.{p}" for p in sources.connector(name).check_options(opts))
    pseudo = data.get("pseudonyms") or {}
    kept = _check_kept(data.get("kept_on_purpose"), problems)
    if problems:
        raise PolicyError(path, problems)
    return Policy(
        path=path,
        version=hashlib.sha256(text.encode()).hexdigest()[:16],
        library_name=library["name"],
        timezone=tz,
        rules=tuple(r for r in rules if r is not None),
        source_options=source_options,
        pseudonym_connection=pseudo.get("connection", "pseudonym_keys"),
        kept_on_purpose=kept,
    )


def load_policy(path: str | Path | None = None) -> Policy:
    p = Path(path) if path else DEFAULT_POLICY
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(p), [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise PolicyError(str(p), ["not UTF-8 text"]) from None
    return parse_policy(text, str(p))


def schedule_table(policy: Policy) -> str:
    """The schedule as a board would read it: a table, then each rule's reason."""
    header = ("#", "Source", "Records", "Kept for", "Then", "Unless")
    rows = []
    notes = []
    for i, r in enumerate(policy.rules, 1):
        cat = sources.connector(r.source).categories[r.category]
        then = r.action if r.action != "strip" else f"strip {', '.join(r.fields)}"
        unless = ", ".join(b.replace("_", " ") for b in r.blockers)
        rows.append((str(i), r.source, cat.description, r.window.describe(), then, unless))
        notes.append(
            f"{i}. {cat.description} ({r.source}.{r.category}): {r.why}\n   Basis: {r.basis}"
        )
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]

    def fmt(row):
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    lines = [
        f"Retention schedule — {policy.library_name}",
        f"(policy version {policy.version}; times in {policy.timezone})",
        "",
        fmt(header),
        "  ".join("-" * w for w in widths),
        *(fmt(r) for r in rows),
        "",
        "Why:",
        *notes,
    ]
    if policy.kept_on_purpose:
        lines += ["", "Kept on purpose (patron data no rule changes, and why):"]
        lines += [f"- {k.source}.{k.table}: {k.reason}" for k in policy.kept_on_purpose]
    return "\n".join(lines)
