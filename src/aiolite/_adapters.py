"""Per-Database type conversion: never ``sqlite3.register_adapter``/``register_converter``.

sqlite3's adapters and converters live in module-global tables, so registering one changes
every connection of every library in the process (and the default datetime ones are
deprecated since Python 3.12).  aiolite converts on its own, per Database:

* **Parameters** (writing): values whose type has an adapter are replaced before the
  statement runs; the rest go to sqlite3 untouched.
* **Rows** (reading): a column is converted when its *declared type*, as written in
  ``CREATE TABLE``, has a converter.  sqlite3 does not expose the declared type of a result
  column, so aiolite looks the result column's name up in the schema (tables, views, temp
  tables).  A name whose declared types convert differently in two objects is left alone;
  a column with no declared type (a view's ``max(due) AS due``) has no say.  A stored value
  that a converter cannot read raises ``sqlite3.DataError`` naming the column and value.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Callable, Optional

from ._types import Parameters

__all__ = ["DEFAULT", "RowPlan", "Types", "needs_no_names", "row_maker"]

Adapter = Callable[[Any], Any]
Converter = Callable[[Any], Any]

# Types sqlite3 binds natively: the fast path checks against these first.
_NATIVE = frozenset({int, float, str, bytes, type(None), bool, memoryview, bytearray})


def _datetime_out(value: dt.datetime) -> str:
    # A space, as SQLite's own datetime('now') and CURRENT_TIMESTAMP write it, so the
    # stored text sorts and compares with SQLite's date functions.
    return value.isoformat(" ")


def _parse_datetime(value: str) -> dt.datetime:
    if value.endswith(("Z", "z")):  # fromisoformat() accepts it only from Python 3.11
        value = value[:-1] + "+00:00"
    return dt.datetime.fromisoformat(value)


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _temporal(parse: Callable[[str], Any], what: str) -> Converter:
    def convert(value: Any) -> Any:
        value = _text(value)
        if not isinstance(value, str):
            return value  # e.g. a unix time stored as a number: the caller's convention
        try:
            return parse(value)
        except ValueError:
            raise ValueError(f"not {what} in ISO 8601") from None

    return convert


def _to_decimal(value: Any) -> Decimal:
    return Decimal(repr(value) if isinstance(value, float) else _text(value))


def _to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    return uuid.UUID(_text(value))


def _to_json(value: Any) -> Any:
    # A JSON column holds JSON text: a str parameter is stored as given, so it must be
    # JSON already (json.dumps("hello"), or pass dicts/lists, which aiolite encodes).
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _json_out(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: SQLite text must be valid UTF-8
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", ""})


def _to_bool(value: Any) -> bool:
    if isinstance(value, (int, float)):
        return bool(value)
    word = _text(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected 0/1 or true/false, yes/no, on/off, t/f, y/n")


_DATETIME = _temporal(_parse_datetime, "a datetime")


DEFAULT_ADAPTERS: dict[type, Adapter] = {
    dt.datetime: _datetime_out,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    Decimal: str,
    uuid.UUID: str,
    dict: _json_out,
    list: _json_out,
}

DEFAULT_CONVERTERS: dict[str, Converter] = {
    "TIMESTAMP": _DATETIME,
    "DATETIME": _DATETIME,
    "DATE": _temporal(lambda s: dt.date.fromisoformat(s[:10]), "a date"),
    "TIME": _temporal(dt.time.fromisoformat, "a time"),
    "DECIMAL": _to_decimal,
    "UUID": _to_uuid,
    "JSON": _to_json,
    "BOOLEAN": _to_bool,
    "BOOL": _to_bool,
}


def _decltype_key(decltype: str) -> str:
    """'decimal(10, 2)' -> 'DECIMAL'; 'timestamp with time zone' -> 'TIMESTAMP'."""
    word = decltype.strip().split("(", 1)[0].split(None, 1)
    return word[0].upper() if word else ""


class Types:
    """Adapters (Python value -> SQLite) and converters (declared type -> Python) of a Database.

    ``Types()`` has the defaults: datetime (naive and aware, ISO 8601), date, time, Decimal,
    UUID, JSON (dict and list), BOOLEAN.  Pass ``adapters``/``converters`` to add or replace
    entries (a value of None removes one), ``defaults=False`` to start empty.
    """

    def __init__(
        self,
        adapters: Optional[Mapping[type, Optional[Adapter]]] = None,
        converters: Optional[Mapping[str, Optional[Converter]]] = None,
        *,
        defaults: bool = True,
    ) -> None:
        self.adapters: dict[type, Adapter] = dict(DEFAULT_ADAPTERS) if defaults else {}
        self.converters: dict[str, Converter] = dict(DEFAULT_CONVERTERS) if defaults else {}
        for typ, adapter in (adapters or {}).items():
            if adapter is None:
                self.adapters.pop(typ, None)
            else:
                self.adapters[typ] = adapter
        for name, converter in (converters or {}).items():
            key = _decltype_key(name)
            if converter is None:
                self.converters.pop(key, None)
            else:
                self.converters[key] = converter
        self._native = _NATIVE - set(self.adapters)

    def __repr__(self) -> str:
        names = sorted(t.__name__ for t in self.adapters)
        return f"<aiolite.Types adapters={names} converters={sorted(self.converters)}>"

    # -- writing --

    def adapt(self, params: Parameters) -> Parameters:
        """Return ``params`` with adaptable values replaced (the same object if none are)."""
        native = self._native
        if type(params) is tuple or type(params) is list:
            for v in params:  # the common case: nothing to adapt, checked without a generator
                if type(v) not in native:
                    return tuple(self.adapt_value(v) for v in params)
            return params
        if isinstance(params, Mapping):
            for v in params.values():
                if type(v) not in native:
                    return {k: self.adapt_value(v) for k, v in params.items()}
            return params
        return tuple(self.adapt_value(v) for v in params)

    def adapt_value(self, value: Any) -> Any:
        typ = type(value)
        if typ in self._native:
            return value
        adapter = self.adapters.get(typ)
        if adapter is None:  # a subclass (datetime is a date): the nearest base that has one
            for base in typ.__mro__[1:]:
                adapter = self.adapters.get(base)
                if adapter is not None:
                    break
            else:
                return value  # sqlite3 decides: its own error names the type
        return adapter(value)

    # -- reading --

    def converter_for(self, decltype: Optional[str]) -> Optional[Converter]:
        return None if not decltype else self.converters.get(_decltype_key(decltype))


class RowPlan:
    """How one statement's rows are built, and the schema version it is valid for (None:
    valid whatever the schema, as a plain tuple or sqlite3.Row without conversion)."""

    __slots__ = ("factory", "version")

    def __init__(self, factory: Any, version: Any) -> None:
        self.factory = factory
        self.version = version


def needs_no_names(shape: Any) -> bool:
    """Rows of this shape do not freeze column names (sqlite3.Row reads them per cursor)."""
    return shape is sqlite3.Row or shape is None or shape is tuple


def _unreadable(name: str, decltype: str, value: Any, exc: Exception) -> sqlite3.DataError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return sqlite3.DataError(
        f"cannot read column {name!r} (declared {decltype}) value {shown}: {exc}; fix the "
        "stored value, change the column's declared type, or read it with types=None"
    )


def row_maker(shape: Any, description: Any, convs: list[tuple[int, Converter, str]]) -> Any:
    """Build a sqlite3 row factory for ``shape`` (Row, tuple, dict, a dataclass, a callable).

    ``convs`` lists (column index, converter, declared type); with none, Row and tuple need
    no Python code per row at all.  Any converter's failure is a ``sqlite3.DataError``.
    """
    names = [d[0] for d in description]
    if convs:

        def fix(row: tuple[Any, ...]) -> tuple[Any, ...]:
            values = list(row)
            for i, convert, decltype in convs:
                value = values[i]
                if value is not None:
                    try:
                        values[i] = convert(value)
                    except Exception as exc:
                        raise _unreadable(names[i], decltype, value, exc) from exc
            return tuple(values)

    if shape is sqlite3.Row:
        if not convs:
            return sqlite3.Row
        return lambda cur, row: sqlite3.Row(cur, fix(row))
    if shape is None or shape is tuple:
        if not convs:
            return None
        return lambda cur, row: fix(row)
    if shape is dict:
        if not convs:
            return lambda cur, row: dict(zip(names, row))
        return lambda cur, row: dict(zip(names, fix(row)))
    if isinstance(shape, type) and dataclasses.is_dataclass(shape):
        cls: Any = shape
        if not convs:
            return lambda cur, row: cls(**dict(zip(names, row)))
        return lambda cur, row: cls(**dict(zip(names, fix(row))))
    # A sqlite3-style factory: called with the cursor and the (converted) tuple.
    if not convs:
        return shape
    return lambda cur, row: shape(cur, fix(row))


DEFAULT = Types()
