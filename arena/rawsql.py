"""Fixed SQL for the voting round trip, on PostgreSQL and SQLite alike.

The ORM compiles each query anew, about half a millisecond of Python apiece; a vote's round trip
runs the same few statements millions of times. They are written once in `arena/voting.py`;
this module reads their rows into model instances (with the ORM's own converters, so a value
reads exactly as a queryset would give it) and writes one instance without the query compiler.
Columns come from the models' metadata, so a field added to a model is read and written here too.
"""

from __future__ import annotations

import weakref
from functools import lru_cache

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model, signals
from django.db.models.base import ModelState

try:
    import psycopg
except ImportError:  # SQLite only
    psycopg = None


if psycopg is not None:

    class _PreparedCursor(psycopg.Cursor):
        """Parameters bound by the server, the statement prepared once per connection: these few
        statements run on every vote, so PostgreSQL parses and plans each once, not per request."""

        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)


_generic: weakref.WeakSet = weakref.WeakSet()


def _conn():
    """The thread's database connection (what `connection` stands for), looked up once by the
    caller: every use of the `connection` proxy is a thread-local lookup, and converting or
    adapting a row's values would otherwise pay one per value."""
    return connections[DEFAULT_DB_ALIAS]


def cursor():
    """A cursor for the fixed statements: prepared on PostgreSQL with psycopg 3, Django's own cursor
    elsewhere. Either way it is Django's cursor wrapper, so execute wrappers still see them."""
    conn = _conn()
    if psycopg is None or conn.vendor != "postgresql" or conn.queries_logged:
        # Elsewhere, and while queries are logged (DEBUG, tests capturing them), the statements
        # run unprepared, so the log shows them with their values.
        return conn.cursor()
    conn.close_if_health_check_failed()
    conn.ensure_connection()
    raw = conn.connection
    if raw.prepare_threshold is None:
        # Django leaves automatic preparing off (for poolers); these cursors ask for it
        # explicitly, and the ORM's client-side cursors never prepare, whatever the threshold.
        raw.prepare_threshold = 2**31
    if raw not in _generic and not conn.in_atomic_block:
        # Every fixed statement is a lookup by key, so one generic plan serves all its runs
        # (PostgreSQL would otherwise plan each run anew). Only prepared statements are
        # affected; set outside a transaction, so no rollback undoes it.
        raw.execute("SET plan_cache_mode = force_generic_plan")
        _generic.add(raw)
    with conn.wrap_database_errors:
        return conn._prepare_cursor(_PreparedCursor(raw))


def q(name: str) -> str:
    return connection.ops.quote_name(name)


@lru_cache(maxsize=None)
def _fields(model) -> tuple:
    return tuple(model._meta.concrete_fields)


def columns(model, alias: str) -> str:
    """The model's columns, as `alias`."col", in the order `instances` reads them."""
    return _columns(model, alias, connection.vendor)


@lru_cache(maxsize=None)
def _columns(model, alias: str, vendor: str) -> str:
    return ", ".join(f"{alias}.{q(f.column)}" for f in _fields(model))


def width(model) -> int:
    return len(_fields(model))


@lru_cache(maxsize=None)
def _converters(model, vendor: str) -> tuple:
    """(column index, column, its converters) for each column whose raw value the ORM converts."""
    out = []
    for i, f in enumerate(_fields(model)):
        col = f.get_col(model._meta.db_table)
        convs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if convs:
            out.append((i, col, tuple(convs)))
    return tuple(out)


@lru_cache(maxsize=None)
def _attnames(model) -> tuple:
    return tuple(f.attname for f in _fields(model))


def _plain(model) -> bool:
    """Whether an instance of `model` can be made without running `Model.__init__` and get the
    same object: the model keeps Django's own `__init__` and `from_db`, and nothing listens to
    its init signals (both answers are cached by Django per sender)."""
    return (model.__init__ is Model.__init__ and model.from_db.__func__ is Model.from_db.__func__
            and not signals.pre_init.has_listeners(model) and not signals.post_init.has_listeners(model))


def _bare(model, values):
    """`model` with these attribute values in place, as `Model.__init__` leaves one (a fresh
    `_state`): __init__ sets each field's attribute in turn and sends two signals, a cost paid
    for every row a round trip reads, which this skips when `_plain(model)`."""
    obj = model.__new__(model)
    obj.__dict__.update(values)
    obj._state = ModelState()
    return obj


def instance(model, values):
    """A model instance from a row's values for `columns(model, ...)`, as the ORM would load it
    (`Model.from_db`, with each column's converters)."""
    values = list(values)
    conn = _conn()
    for i, col, convs in _converters(model, conn.vendor):
        for conv in convs:
            values[i] = conv(values[i], col, conn)
    return loaded(model, **dict(zip(_attnames(model), values)))


def loaded(model, **values):
    """An instance as the ORM loads one with only these fields (`.only(...)`): `values` by
    attribute name, the other fields read from the database on first use."""
    if not _plain(model):
        names = list(values)
        return model.from_db(DEFAULT_DB_ALIAS, names, [values[n] for n in names])
    obj = _bare(model, values)
    inserted(obj)
    return obj


def new(model, **values):
    """A new, unsaved instance, as `model(**values)` makes it: `values` by attribute name (a
    foreign key's `<name>_id`), every other field at its default."""
    if not _plain(model):
        return model(**values)
    given = dict(values)
    attrs = {f.attname: given.pop(f.attname) if f.attname in given else f.get_default() for f in _fields(model)}
    if given:
        raise TypeError(f"{model.__name__} has no field attribute {', '.join(sorted(given))}")
    return _bare(model, attrs)


def related(obj, **objects) -> None:
    """Give `obj` these related objects (foreign key name -> instance or None) without reading
    them, as passing them to the model's constructor would."""
    meta = type(obj)._meta
    for name, value in objects.items():
        meta.get_field(name).set_cached_value(obj, value)


@lru_cache(maxsize=None)
def _insert_sql(model, ignore_conflicts: bool, vendor: str) -> tuple[str, tuple, bool]:
    meta = model._meta
    auto = meta.auto_field is not None and meta.pk is meta.auto_field
    fields = tuple(f for f in _fields(model) if not (auto and f is meta.pk))
    sql = (f"INSERT INTO {q(meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if auto:
        sql += f" RETURNING {q(meta.pk.column)}"
    return sql, fields, auto


def insert_values(obj) -> tuple[str, list]:
    """The quoted columns of an INSERT of `obj` (its auto primary key left out) and their values,
    as `insert` computes them: for statements that insert inside a larger one."""
    conn = _conn()
    return _insert_columns(type(obj), conn.vendor), _save_values(obj, _insert_sql(type(obj), False, conn.vendor)[1], conn)


@lru_cache(maxsize=None)
def _insert_columns(model, vendor: str) -> str:
    return ", ".join(q(f.column) for f in _insert_sql(model, False, vendor)[1])


def _save_values(obj, fields, conn) -> list:
    return [f.get_db_prep_save(f.pre_save(obj, True), conn) for f in fields]


def inserted(obj, pk=None) -> None:
    """Mark `obj` as stored (with its new primary key, if given), as `save()` or loading would."""
    if pk is not None:
        setattr(obj, type(obj)._meta.pk.attname, pk)
    obj._state.adding = False
    obj._state.db = DEFAULT_DB_ALIAS  # what `connection` stands for


@lru_cache(maxsize=None)
def _placeholders(model, vendor: str) -> str:
    _, fields, _ = _insert_sql(model, False, vendor)
    return ", ".join(f"%s::{f.db_type(connection)}" for f in fields)


def insert_placeholders(model) -> str:
    """`%s` per column of `insert_values`, each cast to its column's type (an INSERT ... SELECT
    gives its values no type of their own)."""
    return _placeholders(model, connection.vendor)


def insert(obj, *, ignore_conflicts: bool = False) -> bool:
    """INSERT one instance (its defaults and auto_now fields applied as `save()` would).

    With `ignore_conflicts`, a row that breaks a unique constraint is not stored and False is
    returned. An auto primary key is read back into the instance.
    """
    model = type(obj)
    conn = _conn()
    sql, fields, auto = _insert_sql(model, ignore_conflicts, conn.vendor)
    with cursor() as cur:
        cur.execute(sql, _save_values(obj, fields, conn))
        row = cur.fetchone() if auto else None
        if (auto and row is None) or (not auto and cur.rowcount == 0):
            return False
    inserted(obj, row[0] if auto else None)
    return True


def prep(model, field_name: str, value):
    """A value for a parameter compared with `model.field_name`, adapted as the ORM adapts it."""
    return model._meta.get_field(field_name).get_db_prep_value(value, _conn())


def value_reader(model, field_name: str):
    """A function turning a raw column value of `model.field_name` into what the ORM would give."""
    return _reader(model, field_name, connection.vendor)


@lru_cache(maxsize=None)
def _reader(model, field_name: str, vendor: str):
    f = model._meta.get_field(field_name)
    col = f.get_col(model._meta.db_table)
    convs = tuple(connection.ops.get_db_converters(col) + col.get_db_converters(connection))

    def read(value):
        for conv in convs:
            value = conv(value, col, connection)
        return value

    return read
