"""`loyalty members erase`: a member's PII out of every table, the ledger untouched; idempotent.

In one transaction: the members row goes; the member's inputs in the inbox of
every generation keep their fields but lose email (set to "erased", so a
re-run still decodes the signup), name, phone and birth date (null); the
snapshots forget the birth date; dead letters lose the same fields and any
copy of the member's strings, whatever their other bytes (a letter that is not
UTF-8 or not JSON is searched and scrubbed byte for byte); an `erasures` row
records it. The ledger holds
no PII and is not changed (it refuses changes anyway).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from loyalty_ledger import log
from loyalty_ledger.errors import UserError
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.store.db import Connection
from loyalty_ledger.store.locks import one_file_writer

ERASED_EMAIL = "erased"  # a signup's email must stay a non-empty string
ERASED_TEXT = "[erased]"  # in place of a member's string found elsewhere
TEXT_FIELDS = ("email", "name", "phone")  # found anywhere in a dead letter, they are replaced
NULLED_FIELDS = ("name", "phone", "birth_date")
IDENTITY_FIELDS = frozenset({"event_id", "type", "customer_id", "occurred_at"})  # never changed


class ErasureError(UserError):
    """A customer this database knows nothing of; the message says what to check."""


@dataclass(frozen=True, slots=True)
class Erasure:
    customer_id: str
    member: bool  # a members row was deleted
    inputs: int  # inbox rows scrubbed now, every generation
    states: int  # snapshots that forgot a birth date, every generation
    dead_letters: int  # dead letters scrubbed now
    erased_before: datetime | None  # when an earlier erasure of this customer ran


@dataclass(frozen=True, slots=True)
class _Pii:
    """The member's values, as found in the members row and its inputs."""

    emails: frozenset[str]
    texts: frozenset[str]  # emails, names, phones
    dates: frozenset[str]  # birth dates, ISO


def erase(conn: Connection, customer_id: str) -> Erasure:
    """Erase `customer_id`'s PII; raises ErasureError for a customer never seen."""
    with one_file_writer(conn), conn.transaction():
        before = conn.execute(
            "SELECT erased_at FROM erasures WHERE customer_id = %s", (customer_id,)
        ).fetchone()
        member = conn.execute(
            "DELETE FROM members WHERE customer_id = %s RETURNING email, name, phone, birth_date",
            (customer_id,),
        ).fetchone()
        schemas = _generation_schemas(conn)
        inputs = {s: _inputs(conn, s, customer_id) for s in schemas}
        letters = _letters_naming(conn, customer_id)
        own = {i: raw for i, raw in letters if _owner(_text(raw)) == customer_id}
        known = member or before or any(inputs.values()) or letters
        if not known and not _has_state(conn, schemas, customer_id):
            raise ErasureError(
                f"no customer {customer_id!r}: no member, input, dead letter or state has this "
                "id (ids are case-sensitive)"
            )
        rows = [raw for found in inputs.values() for _, raw in found]
        pii = _collect(member, [*rows, *map(_text, own.values())])
        done = Erasure(
            customer_id, member is not None,
            sum(_scrub_inbox(conn, s, found, pii) for s, found in inputs.items()),
            sum(_forget_birth_date(conn, s, customer_id) for s in schemas),
            _scrub_letters(conn, customer_id, own, pii),
            before[0] if before else None,
        )  # fmt: skip
        conn.execute(
            "INSERT INTO erasures (customer_id, inputs, dead_letters) VALUES (%s, %s, %s) "
            "ON CONFLICT (customer_id) DO UPDATE SET inputs = erasures.inputs + excluded.inputs, "
            "dead_letters = erasures.dead_letters + excluded.dead_letters",
            (customer_id, done.inputs, done.dead_letters),
        )
    log.get("erase").info(
        "erased", customer_id=customer_id, member=done.member, inputs=done.inputs,
        states=done.states, dead_letters=done.dead_letters, again=done.erased_before is not None,
    )  # fmt: skip
    return done


def _generation_schemas(conn: Connection) -> list[str]:
    """Every generation's schema that still has its tables (a dropped one has nothing left)."""
    schemas = []
    for generation in generations.listing(conn):
        found = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            (sql.Identifier(generation.schema_name, "inbox").as_string(conn),),
        ).fetchone()
        if found and found[0]:
            schemas.append(generation.schema_name)
    return schemas


def _inputs(conn: Connection, schema: str, customer_id: str) -> list[tuple[str, str]]:
    """(event_id, raw) of the customer's inputs in `schema`'s inbox; locked until commit."""
    query = sql.SQL("SELECT event_id, raw FROM {} WHERE customer_id = %s FOR UPDATE").format(
        sql.Identifier(schema, "inbox")
    )
    return [(str(e), str(r)) for e, r in conn.execute(query, (customer_id,))]


def _letters_naming(conn: Connection, customer_id: str) -> list[tuple[int, bytes]]:
    rows = conn.execute(
        "SELECT id, raw FROM dead_letters WHERE position(%s IN raw) > 0 ORDER BY id FOR UPDATE",
        (_bytes(customer_id),),
    )
    return [(int(i), bytes(r)) for i, r in rows]


def _has_state(conn: Connection, schemas: Sequence[str], customer_id: str) -> bool:
    for schema in schemas:
        query = sql.SQL("SELECT 1 FROM {} WHERE customer_id = %s").format(
            sql.Identifier(schema, "customer_state")
        )
        if conn.execute(query, (customer_id,)).fetchone():
            return True
    return False


# ------------------------------------------------------------------ pure: finding and scrubbing


def _text(raw: bytes) -> str:
    """A dead letter's bytes as text, losslessly: a byte that is not UTF-8 becomes a lone
    surrogate (surrogateescape), which `_bytes` turns back into that byte."""
    return raw.decode("utf-8", errors="surrogateescape")


def _bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate from a JSON escape ("\ud800"): written as one
        return text.encode("utf-8", errors="backslashreplace")


def _json_object(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _owner(raw: str) -> str | None:
    body = _json_object(raw)
    owner = body.get("customer_id") if body else None
    return owner if isinstance(owner, str) else None


def _collect(member: tuple[Any, ...] | None, raws: Iterable[str]) -> _Pii:
    found: dict[str, set[str]] = {k: set() for k in (*TEXT_FIELDS, "birth_date")}
    if member is not None:
        for name, value in zip((*TEXT_FIELDS, "birth_date"), member, strict=True):
            if value:
                found[name].add(value if isinstance(value, str) else value.isoformat())
    for raw in raws:
        body = _json_object(raw) or {}
        for name, values in found.items():
            if isinstance(value := body.get(name), str) and value:
                values.add(value)
    ours = {ERASED_EMAIL, ERASED_TEXT}
    texts = (found["email"] | found["name"] | found["phone"]) - ours
    return _Pii(frozenset(found["email"] - ours), frozenset(texts),
                frozenset(found["birth_date"] - ours))  # fmt: skip


def _replace_all(text: str, values: Iterable[str]) -> str:
    """`text` with every value, as written or JSON-escaped, replaced by ERASED_TEXT."""
    for value in sorted(values, key=len, reverse=True):  # longest first: a name inside an email
        for form in {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}:
            text = text.replace(form, ERASED_TEXT)
    return text


def _walk(value: Any, pii: _Pii) -> Any:
    """Strings that are a member's value, or hold its email, become ERASED_TEXT. Not parts of
    other strings: a name may well be part of a product's name."""
    if isinstance(value, str):
        hit = value in pii.texts or any(email in value for email in pii.emails)
        return ERASED_TEXT if hit else value
    if isinstance(value, list):
        return [_walk(v, pii) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, pii) for k, v in value.items()}
    return value


def scrub_json(raw: str, pii: _Pii) -> str | None:
    """A JSON object input without PII: email "erased", name, phone and birth date null, the
    member's strings replaced in other fields; identities, the rest and the order of fields
    kept. None: unchanged (or not a JSON object)."""
    body = _json_object(raw)
    if body is None:
        return None
    if "email" in body:
        body["email"] = ERASED_EMAIL
    for name in NULLED_FIELDS:
        if name in body:
            body[name] = None
    body = {k: v if k in IDENTITY_FIELDS else _walk(v, pii) for k, v in body.items()}
    scrubbed = json.dumps(body, ensure_ascii=False)
    return scrubbed if scrubbed != json.dumps(json.loads(raw), ensure_ascii=False) else None


def scrub_text(raw: str, values: frozenset[str]) -> str | None:
    """Any dead letter: the member's strings replaced. None: unchanged."""
    scrubbed = _replace_all(raw, values)
    return scrubbed if scrubbed != raw else None


# ------------------------------------------------------------------ writing


def _scrub_inbox(conn: Connection, schema: str, found: Sequence[tuple[str, str]], pii: _Pii) -> int:
    changes = [(new, event_id) for event_id, raw in found
               if (new := scrub_json(raw, pii)) is not None]  # fmt: skip
    if changes:
        with conn.cursor() as cur:
            cur.executemany(  # body_hash stays: it names the input as it arrived
                sql.SQL("UPDATE {} SET raw = %s WHERE event_id = %s").format(
                    sql.Identifier(schema, "inbox")
                ),
                changes,
            )
    return len(changes)


def _forget_birth_date(conn: Connection, schema: str, customer_id: str) -> int:
    cur = conn.execute(
        sql.SQL(
            "UPDATE {} SET state = jsonb_set(state, '{{birth_date}}', 'null'::jsonb) "
            "WHERE customer_id = %s AND state->'birth_date' <> 'null'::jsonb"
        ).format(sql.Identifier(schema, "customer_state")),
        (customer_id,),
    )
    return cur.rowcount


def _scrub_letters(conn: Connection, customer_id: str, own: dict[int, bytes], pii: _Pii) -> int:
    """The member's own letters lose the PII fields; any letter loses the member's strings."""
    rows = conn.execute(
        "SELECT id, raw FROM dead_letters d WHERE EXISTS (SELECT 1 FROM unnest(%s::bytea[]) v "
        "WHERE position(v IN d.raw) > 0) OR id = ANY(%s) OR position(%s IN raw) > 0 FOR UPDATE",
        ([_bytes(t) for t in sorted(pii.texts)], list(own), _bytes(customer_id)),
    ).fetchall()
    changes = []
    for letter_id, stored in rows:
        raw = _text(bytes(stored))
        new = scrub_json(raw, pii) if letter_id in own else None
        # A bare date in a letter that is not the member's is most likely someone else's.
        bare = customer_id in raw and _json_object(raw) is None
        values = pii.texts | pii.dates if bare else pii.texts
        new = scrub_text(new if new is not None else raw, values) or new
        if new is not None:
            changes.append((_bytes(new), letter_id))
    if changes:
        with conn.cursor() as cur:
            cur.executemany("UPDATE dead_letters SET raw = %s WHERE id = %s", changes)
    return len(changes)
