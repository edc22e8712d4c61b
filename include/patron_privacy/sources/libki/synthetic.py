"""A deterministic, entirely invented Libki for the demo and tests.

The library's four branches (the Koha demo's codes) each have a row of public PCs.
Over ``days`` days before ``as_of`` patrons and guests log in and out (a ``LOGIN`` and,
usually, a ``LOGOUT`` statistics row; a few sessions end with ``SESSION_DELETED`` or
not at all), print now and then, and reserve PCs. The snapshot is of a Libki whose own
nightly job has been switched off for a while, as it is when this pipeline takes over:
statistics still carry usernames (a few old ones carry Libki's MD5 "anonymization",
and one ``USERS_DELETE`` row lists the usernames Libki deleted), guest passes of the
last days are still there, two crashed clients left their sessions behind, and some
accounts have not been used for more than a year.

Every value comes from ``random.Random(seed)`` and a seeded ``Faker``; nothing reads
the clock, so ``(patrons, days, seed, as_of)`` always gives the same tables. Logs
counts only, never a generated value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random

from faker import Faker
from sqlalchemy import Engine, func, insert, inspect, select

from patron_privacy.sources.libki import schema

log = logging.getLogger("patron_privacy.libki.synthetic")

# The Koha demo's branches, so facts from both sources line up by branch.
BRANCHES = ("MAIN", "NORTH", "EAST", "WEST")
PCS_PER_BRANCH = {"MAIN": 10, "NORTH": 5, "EAST": 5, "WEST": 4}
OPEN_HOURS = (9, 20)  # sessions start between 9:00 and 20:00
CLOSED_WEEKDAYS = (6,)  # Sunday (isoweekday 7 -> weekday 6)
PRINTERS = ("bw-main", "color-main", "bw-branch")


def _card(rng: random.Random) -> str:
    return f"2997{rng.randrange(10**9, 10**10)}"


def _when(day: dt.date, rng: random.Random) -> dt.datetime:
    hour = rng.randint(OPEN_HOURS[0], OPEN_HOURS[1] - 1)
    return dt.datetime.combine(day, dt.time(hour, rng.randint(0, 59), rng.randint(0, 59)))


def _check_empty(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    if names & {"users", "statistics"}:
        with engine.connect() as c:
            if c.execute(select(func.count()).select_from(schema.users)).scalar():
                raise RuntimeError("the Libki database is not empty; build only into an empty one")


def build_libki(
    engine: Engine, *, patrons: int = 400, days: int = 150, seed: int = 11, as_of: dt.date
) -> dict[str, int]:
    """Create Libki's tables in ``engine`` and fill them; returns row counts per table."""
    _check_empty(engine)
    schema.create_schema(engine)
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    midnight = dt.datetime.combine(as_of, dt.time.min)
    first_day = as_of - dt.timedelta(days=days)

    clients, pc_of_branch = [], {}
    for b in BRANCHES:
        for n in range(1, PCS_PER_BRANCH[b] + 1):
            cid = len(clients) + 1
            clients.append(
                {
                    "id": cid,
                    "name": f"{b}-PC{n:02d}",
                    "location": b,
                    "status": "online",
                    "type": "public",
                    "ipaddress": f"10.{BRANCHES.index(b) + 10}.0.{n + 10}",
                    "macaddress": ":".join(f"{rng.randrange(256):02x}" for _ in range(6)),
                    "hostname": f"{b.lower()}-pc{n:02d}",
                    "last_registered": midnight - dt.timedelta(minutes=rng.randint(1, 30)),
                }
            )
            pc_of_branch.setdefault(b, []).append(cid)

    # Accounts: most used within the period, some dormant for more than a year.
    users, cards = [], set()
    for uid in range(1, patrons + 1):
        card = _card(rng)
        while card in cards:
            card = _card(rng)
        cards.add(card)
        created = midnight - dt.timedelta(days=rng.randint(30, 5 * 365), hours=rng.randint(0, 9))
        dormant = rng.random() < 0.2
        updated = (
            midnight - dt.timedelta(days=rng.randint(380, 900))
            if dormant
            else max(created, midnight - dt.timedelta(days=rng.randint(days, days + 200)))
        )
        updated = max(updated, created)
        users.append(
            {
                "id": uid,
                "username": card,
                "password": hashlib.sha256(f"{seed}:{uid}".encode()).hexdigest()[:40],
                "status": "enabled",
                "notes": None,
                "is_troublemaker": "No",
                "is_guest": "No",
                "birthdate": fake.date_of_birth(minimum_age=8, maximum_age=90),
                "created_on": created,
                "updated_on": updated,
                "firstname": fake.first_name(),
                "lastname": fake.last_name(),
                "category": rng.choice(("ADULT", "ADULT", "ADULT", "CHILD", "SENIOR")),
                "creation_source": rng.choice(("SIP", "SIP", "local")),
                "_home": rng.choices(BRANCHES, weights=(4, 2, 2, 2))[0],
                "_weight": rng.paretovariate(1.5),
                "_dormant": dormant,
            }
        )
    staff = users[:3]
    for s in staff:
        s["_dormant"] = False
        s["updated_on"] = max(s["created_on"], midnight - dt.timedelta(days=400))
    # One patron banned indefinitely, dormant: kept while the ban is in force.
    banned = users[3]
    banned.update(
        {
            "is_troublemaker": "Yes",
            "troublemaker_until": None,
            "status": "disabled",
            "_dormant": True,
            "created_on": midnight - dt.timedelta(days=900),
            "updated_on": midnight - dt.timedelta(days=500),
        }
    )
    active = [u for u in users[3:] if not u["_dormant"]]
    weights = [u["_weight"] for u in active]

    stats: list[dict] = []
    prints: list[tuple[dict, dict]] = []
    guests: list[dict] = []

    def stat(action, when, username, client, session_id=None, info=None, **kw):
        stats.append(
            {
                "id": len(stats) + 1,
                "username": username,
                "client_name": client["name"] if client else None,
                "client_location": client["location"] if client else None,
                "client_type": client["type"] if client else None,
                "action": action,
                "created_on": when,
                "anonymized": 0,
                "session_id": session_id,
                "info": json.dumps(info) if info is not None else None,
                **kw,
            }
        )

    next_uid = patrons + 1
    day = first_day
    while day < as_of:
        if day.weekday() not in CLOSED_WEEKDAYS:
            guest_no = 0
            for b in BRANCHES:
                n_sessions = rng.randint(6, 12) * len(pc_of_branch[b]) // 4
                for _ in range(n_sessions):
                    client = clients[rng.choice(pc_of_branch[b]) - 1]
                    start = _when(day, rng)
                    if rng.random() < 0.12:
                        guest_no += 1
                        g = {
                            "id": next_uid,
                            "username": f"guest{guest_no}",
                            "password": f"{rng.randrange(10000):04d}",
                            "status": "enabled",
                            "is_guest": "Yes",
                            "created_on": start - dt.timedelta(minutes=rng.randint(1, 20)),
                            "updated_on": start,
                            "category": "",
                            "creation_source": "local",
                            "_day": day,
                        }
                        next_uid += 1
                        guests.append(g)
                        user = g
                    else:
                        user = rng.choices(active, weights=weights)[0]
                    sid = hashlib.sha1(f"{seed}:{len(stats)}".encode()).hexdigest()
                    stat(
                        "LOGIN",
                        start,
                        user["username"],
                        client,
                        sid,
                        {
                            "client_version": "4.6.0",
                            "user_id": user["id"],
                            "client_id": client["id"],
                            "session_starting_minutes": 60,
                        },
                    )
                    minutes = min(int(rng.lognormvariate(3.6, 0.6)) + 1, 240)
                    end = start + dt.timedelta(minutes=minutes)
                    roll = rng.random()
                    if roll < 0.90 and end < midnight:
                        stat(
                            "LOGOUT",
                            end,
                            user["username"],
                            client,
                            sid,
                            {"client_version": "4.6.0"},
                        )
                    elif roll < 0.95 and end < midnight:
                        stat("SESSION_DELETED", end, user["username"], client, sid)
                    if rng.random() < 0.06 and day >= as_of - dt.timedelta(days=10):
                        prints.append(
                            (user, {"client": client, "when": start + dt.timedelta(minutes=5)})
                        )
        day += dt.timedelta(days=1)

    # A staff member adds time for a patron; a client is restarted.
    for k in range(6):
        client = clients[rng.randrange(len(clients))]
        when = _when(as_of - dt.timedelta(days=rng.randint(1, days - 1)), rng)
        patron = rng.choice(active)
        stat(
            "MODIFY_TIME",
            when,
            staff[k % 2]["username"],  # the third staff account is idle (kept: staff)
            client,
            None,
            {"username": patron["username"], "minutes": 15},
        )
    # What Libki's own job left behind before it was switched off: usernames it
    # "anonymized" with MD5, and the usernames of accounts it deleted, in info.
    old = [s for s in stats if s["created_on"] < midnight - dt.timedelta(days=100)][:40]
    salt = rng.randrange(1_000_000)
    for s in old:
        s["username"] = hashlib.md5(f"{s['username']}{salt}".encode()).hexdigest()  # noqa: S324
        s["anonymized"] = 1
    deleted = [_card(rng) for _ in range(3)]
    stat(
        "USERS_DELETE",
        midnight - dt.timedelta(days=days - 5, hours=2),
        None,
        None,
        None,
        {"deleted_from": "cronjobs/libki_nightly", "usernames": ",".join(deleted)},
    )
    stats.sort(key=lambda s: (s["created_on"], s["id"]))
    for i, s in enumerate(stats, 1):
        s["id"] = i

    # Guests of the last three days are still there (Libki's nightly purge is off).
    guests = [g for g in guests if g["_day"] >= as_of - dt.timedelta(days=3)]
    seen_guest = set()
    kept_guests = []
    for g in guests:
        key = g["username"]
        if key in seen_guest:  # names repeat daily; the latest day's account wins
            kept_guests = [k for k in kept_guests if k["username"] != key]
        seen_guest.add(key)
        kept_guests.append(g)

    # Live and left-behind sessions: two crashed clients days ago, one PC in use now.
    last_login = {}
    for s in stats:
        if s["action"] == "LOGIN":
            last_login.setdefault(s["client_name"], []).append(s)
    client_by_name = {c["name"]: c for c in clients}
    user_by_name = {u["username"]: u for u in users}
    ended_ids = {t["session_id"] for t in stats if t["action"] in schema.SESSION_END_ACTIONS}
    session_rows = []
    picked = 0
    for name in sorted(last_login):
        for s in last_login[name]:
            u = user_by_name.get(s["username"])
            ended = s["session_id"] in ended_ids
            if u is None or ended or u["id"] in {r["user_id"] for r in session_rows}:
                continue
            if s["created_on"] < midnight - dt.timedelta(days=2):
                session_rows.append(
                    {
                        "client_id": client_by_name[name]["id"],
                        "user_id": u["id"],
                        "status": "active",
                        "minutes": 0,
                        "session_id": s["session_id"],
                    }
                )
                picked += 1
                break
        if picked >= 2:
            break

    reservations = []
    for k in range(8):
        u = active[rng.randrange(len(active))]
        if u["id"] in {r["user_id"] for r in reservations}:
            continue
        c = clients[rng.randrange(len(clients))]
        begin = midnight + dt.timedelta(days=rng.randint(-6, 3), hours=rng.randint(9, 18))
        reservations.append(
            {
                "id": k + 1,
                "client_id": c["id"],
                "user_id": u["id"],
                "begin_time": begin,
                "end_time": begin + dt.timedelta(minutes=30),
            }
        )

    files, jobs = [], []
    for user, p in prints:
        if user.get("is_guest") == "Yes" and user not in kept_guests:
            continue
        fid = len(files) + 1
        doc = rng.choice(("resume", "boarding-pass", "tax-form", "lease", "letter"))
        files.append(
            {
                "id": fid,
                "filename": f"{doc}-{fid}.pdf",
                "content_type": "application/pdf",
                "data": b"%PDF-1.4\n% synthetic page\n"
                + bytes(rng.randrange(256) for _ in range(64)),
                "pages": rng.randint(1, 6),
                "client_id": p["client"]["id"],
                "client_name": p["client"]["name"],
                "client_location": p["client"]["location"],
                "client_type": "public",
                "user_id": user["id"],
                "username": user["username"],
                "created_on": p["when"],
                "updated_on": p["when"],
            }
        )
        jobs.append(
            {
                "id": len(jobs) + 1,
                "type": "PrintManager",
                "status": rng.choice(("Done", "Done", "Done", "Canceled")),
                "copies": 1,
                "printer": rng.choice(PRINTERS),
                "user_id": user["id"],
                "print_file_id": fid,
                "created_on": p["when"],
                "updated_on": p["when"],
                "released_on": p["when"] + dt.timedelta(minutes=2),
            }
        )

    user_columns = [c.name for c in schema.users.columns if c.name != "instance"]

    defaults = {"is_troublemaker": "No", "gratis_print_balance": 0, "firstname": "", "lastname": ""}

    def public(row: dict) -> dict:
        return {k: row.get(k, defaults.get(k)) for k in user_columns}

    all_users = [public(u) for u in users] + [public(g) for g in kept_guests]
    with engine.begin() as c:
        c.execute(insert(schema.locations), [{"code": b} for b in BRANCHES])
        c.execute(insert(schema.clients), clients)
        c.execute(
            insert(schema.roles), [{"id": 1, "role": "admin"}, {"id": 2, "role": "superadmin"}]
        )
        c.execute(insert(schema.users), all_users)
        c.execute(insert(schema.user_roles), [{"user_id": s["id"], "role_id": 1} for s in staff])
        c.execute(
            insert(schema.settings),
            [
                {"name": "GuestPassPrefix", "value": "guest"},
                {"name": "CurrentGuestNumber", "value": "1"},
                {"name": "DataAnonymizationDays", "value": "0"},
                {"name": "DataRetentionDays", "value": "0"},
                {"name": "InactiveUserRetentionDays", "value": "0"},
                {"name": "PrintJobRetentionDays", "value": "0"},
            ],
        )
        for start in range(0, len(stats), 5000):
            c.execute(insert(schema.statistics), stats[start : start + 5000])
        if session_rows:
            c.execute(insert(schema.sessions), session_rows)
        if reservations:
            c.execute(insert(schema.reservations), reservations)
        if files:
            c.execute(insert(schema.print_files), files)
            c.execute(insert(schema.print_jobs), jobs)
        c.execute(
            insert(schema.messages),
            [
                {"user_id": u["id"], "content": "Your session ends in 5 minutes."}
                for u in active[:5]
            ],
        )
    counts = {}
    with engine.connect() as c:
        for t in (
            "users",
            "statistics",
            "sessions",
            "reservations",
            "print_jobs",
            "print_files",
            "clients",
        ):
            counts[t] = int(
                c.execute(select(func.count()).select_from(schema.metadata.tables[t])).scalar()
            )
    log.info("libki synthetic library built: %s", counts)
    return counts
