"""SQLite index hints: `with_hint(table, "INDEXED BY ix", dialect_name="sqlite")` rendered."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import Engine


class HintedSQLiteCompiler(SQLiteCompiler):
    """SQLAlchemy's SQLite compiler silently drops FROM hints; SQLite takes INDEXED BY right
    after the table name and its alias, which is where a FROM hint is placed."""

    def get_from_hint_text(self, table: Any, text: str) -> str | None:
        return text or None


def render_index_hints(engine: Engine) -> None:
    """Make `engine` (SQLite) write the index hints of the queries it compiles."""
    engine.dialect.statement_compiler = HintedSQLiteCompiler
