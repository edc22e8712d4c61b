"""Refuse free text that looks like it names a patron.

The request register and the board report describe requests in words; the
people they concern are named only in ``legal_hold_subjects``. Staff type free
text (an agency, what an order asks for, who a request was referred to), so
each such field is checked here before it is written. A check can only catch
what has a shape — an email address, a phone or card number, a patron number,
a street address, an IP address — never a name, which is why the messages say
what to write instead.

Messages never repeat the offending text: they end up on terminals, in task
logs and in HTTP responses, which is exactly where the value must not go.

Pure ``re``: DAG files import this at parse time.
"""

from __future__ import annotations

import re

# (what it looks like, pattern); first match wins, so the most specific come first.
_CHECKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("an email address", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("a social security number", re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")),
    (
        "a phone number",
        re.compile(r"(?<![\d-])(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}(?![\d-])"),
    ),
    (
        "a card or barcode number",
        re.compile(r"(?<!\d)(?:\d{7,}|\d{4}(?:[ -]\d{4}){2,}(?:[ -]\d{1,4})?)(?!\d)"),
    ),
    (
        "a patron, card or account number",
        re.compile(
            r"(?i)\b(?:patron|borrower(?:number)?|card(?:holder)?|cardnumber|user(?:id|name)?"
            r"|member(?:ship)?|account)\s*(?:no\.?|number|num|id|#)?\s*[:#=]?\s*\d{3,}"
        ),
    ),
    (
        "a street address",
        re.compile(
            r"\b\d{1,6}\s+(?:[A-Z][A-Za-z'.-]*\s+){1,3}"
            r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct"
            r"|Place|Pl|Way|Terrace|Ter|Circle|Cir|Highway|Hwy)\b"
        ),
    ),
    ("an IP address", re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")),
)

# The same idea for a DAG's trigger form, as a JSON Schema ``pattern`` (ECMA-262 and
# Python ``re`` alike): a run whose conf matches is refused before it is created, so
# the value never reaches Airflow's metadata database. The task re-checks with
# ``find_identifier`` (the full set) before anything is written.
FORM_PATTERN = (
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+[.][A-Za-z]{2,}"
    r"|[0-9]{8,}"
    r"|[0-9]{3}[-. )]+[0-9]{3}[-. ][0-9]{4}"
    r"|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}"
    r"|[0-9]{3}-[0-9]{2}-[0-9]{4}"
)

GUIDANCE = (
    "the register holds no patron identifiers: describe the request in words "
    "(e.g. 'loan history of one patron named in the order, March-May 2026') and "
    "name the patron only in a legal hold (python -m patron_privacy holds place)"
)


# Court docket numbers carry long digit runs between letters and hyphens
# (Connecticut: HHD-CV26-6012345-S); they name a case, not a patron.
_DOCKET = re.compile(r"\b(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+){2,}\b")


def find_identifier(text: str | None) -> str | None:
    """What the text looks like it contains ('an email address', ...), or None."""
    if not text:
        return None
    for what, pattern in _CHECKS:
        hay = _DOCKET.sub(" ", text) if what == "a card or barcode number" else text
        if pattern.search(hay):
            return what
    return None


def check_free_text(field: str, text: str | None) -> str | None:
    """A one-line problem for ``field`` (never quoting the text), or None when it is clean."""
    what = find_identifier(text)
    if what is None:
        return None
    return f"{field}: looks like it contains {what}; {GUIDANCE}"
