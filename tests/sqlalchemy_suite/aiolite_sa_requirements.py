"""What SQLite (3.40 here) and the sqlite+aiolite dialect support, for SQLAlchemy's suite.

SQLAlchemy's base ``SuiteRequirements`` leaves most optional features closed (their tests
are skipped); a dialect opens what its database supports and closes what it lacks.  Each
entry states a fact about SQLite or this dialect.  The same class serves the
``sqlite+aiosqlite`` comparison run, so both drivers face the same tests.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements

#: Features SQLite has (with the SQLite version that brought them, when it matters).
SUPPORTED: dict[str, tuple[int, ...]] = {
    # transactions: this dialect sends BEGIN itself, so savepoints nest properly
    "savepoints": (),
    "isolation_level": (),
    "autocommit": (),
    "async_dialect": (),
    # SQL
    "ctes": (),
    "ctes_with_update_delete": (),
    "ctes_with_values": (),
    "intersect": (),
    "except_": (),
    "window_functions": (3, 25),
    "tuple_in": (3, 15),
    "nullsordering": (3, 30),
    "update_from": (3, 33),
    "mod_operator_as_percent_sign": (),
    "boolean_col_expressions": (),
    "order_by_label_with_expression": (),
    "table_ddl_if_exists": (),
    "index_ddl_if_exists": (),
    "regexp_match": (),  # the dialect registers regexp()
    "json_type": (3, 9),
    "computed_columns": (3, 31),
    "computed_columns_stored": (3, 31),
    "computed_columns_virtual": (3, 31),
    "views": (),
    "datetime_historic": (),
    "date_historic": (),
    "supports_bitwise_or": (),
    "supports_bitwise_and": (),
    "supports_bitwise_not": (),
    "supports_bitwise_shift": (),
    # reflection
    "view_reflection": (),
    "view_column_reflection": (),
    "check_constraint_reflection": (),
    "reflect_table_options": (),
    "reflects_pk_names": (),
    "computed_columns_reflect_persisted": (3, 31),
    "foreign_key_constraint_option_reflection_ondelete": (),
    "foreign_key_constraint_option_reflection_onupdate": (),
    "fk_constraint_option_reflection_ondelete_restrict": (),
    "fk_constraint_option_reflection_ondelete_noaction": (),
    "fk_constraint_option_reflection_onupdate_restrict": (),
}

#: Features SQLite lacks, or that this test configuration cannot offer, and why.
UNSUPPORTED: dict[str, str] = {
    "implicitly_named_constraints": "SQLite keeps no name for an unnamed constraint",
    "parens_in_union_contained_select_w_limit_offset": "SQLite rejects (SELECT ...) UNION",
    "parens_in_union_contained_select_wo_limit_offset": "SQLite rejects (SELECT ...) UNION",
    # A TEMPORARY table lives in one connection; the suite runs on a file database with
    # a pool of connections, so the next checkout does not see it.
    "temporary_tables": "temporary tables are per connection",
    "temp_table_reflection": "temporary tables are per connection",
    "temp_table_names": "temporary tables are per connection",
    "has_temp_table": "temporary tables are per connection",
    "temporary_views": "temporary views are per connection",
    # The suite's unicode schema has a foreign key to a column that is not unique, which
    # SQLite refuses at the first INSERT once foreign_keys=ON (this dialect's default).
    "unicode_ddl": "the suite's unicode schema has an invalid foreign key",
    # SQLAlchemy's test recognises server-side cursors by driver name and knows only its
    # own drivers (a TODO in the suite says so); tests/test_sqlalchemy.py covers ours.
    "server_side_cursors": "the suite hard-codes the drivers it checks",
}


def _since(version: tuple[int, ...]) -> Any:
    if not version:
        return exclusions.open()
    return exclusions.only_if(
        lambda config: config.db.dialect.dbapi.sqlite_version_info >= version,
        f"needs SQLite {'.'.join(map(str, version))}+",
    )


class Requirements(SuiteRequirements):
    def get_isolation_levels(self, config: Any) -> dict[str, Any]:
        # In the order the dialect lists them, which its error message repeats.
        return {
            "default": "SERIALIZABLE",
            "supported": list(config.db.dialect.get_isolation_level_values(None)),
        }


for _name, _version in SUPPORTED.items():
    setattr(Requirements, _name, property(lambda self, v=_version: _since(v)))
for _name, _reason in UNSUPPORTED.items():
    setattr(Requirements, _name, property(lambda self, r=_reason: exclusions.closed(r)))
