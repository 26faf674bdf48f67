"""Insert all the rows of one write with as few statements as the database allows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Column, Connection, Dialect, String, Table
from sqlalchemy.exc import DBAPIError

# (table, rows): rows of one table, each a dict of column values (all with the same keys).
Rows = tuple[Table, list[dict[str, Any]]]


class RowWriter:
    """Writes a parent row and its dependent rows: on PostgreSQL in one statement (one round
    trip), on SQLite in one executemany per table; driver SQL, nothing compiled per write."""

    def __init__(self, dialect: Dialect, *, link: str = "resource_pk") -> None:
        self.dialect = dialect
        self.link = link
        self.one_statement = dialect.name == "postgresql"
        self._sql: dict[tuple, str] = {}
        self._processors: dict[Column[Any], Any] = {}

    def insert(
        self,
        connection: Connection,
        parent: Table,
        parent_row: dict[str, Any],
        children: Sequence[Rows],
    ) -> int:
        """Insert `parent_row` and every child row; a child table's link column gets the
        parent's new primary key, which is returned."""
        children = [(table, rows) for table, rows in children if rows]
        columns = [list(rows[0]) for _, rows in children]
        if self.one_statement:
            linked = [self._linked(t, n) for (t, _), n in zip(children, columns, strict=True)]
            shape = zip(children, columns, linked, strict=True)
            # A linked table's rows travel as one JSON parameter, whatever their number.
            key = (parent.name, *parent_row, *((t.name, j or len(r), *n) for (t, r), n, j in shape))
            sql = self._sql.get(key)
            if sql is None:
                sql = self._sql[key] = self._cte(parent, list(parent_row), children, columns)
            params: list[Any] = self._values(parent, parent_row)
            for (table, rows), is_linked in zip(children, linked, strict=True):
                if is_linked:
                    # One parameter, not one per value: psycopg converts a statement of more
                    # than 50 parameters afresh each time, and dumps each one in Python.
                    params.append(orjson.dumps(rows, default=str).decode())
                else:
                    for row in rows:
                        params += self._values(table, row)
            return connection.exec_driver_sql(sql, tuple(params)).scalar_one()
        # SQLite runs in-process: no round trips to save, only the per-statement overhead of
        # SQLAlchemy's execution layer, so the driver's cursor is used directly.
        dbapi_error = self.dialect.loaded_dbapi.Error
        statement, params = "", None
        try:
            cursor = connection.connection.cursor()
            try:
                statement = self._insert_sql(parent, list(parent_row))
                params = self._values(parent, parent_row)
                cursor.execute(statement, params)
                pk = cursor.lastrowid
                for (table, rows), names in zip(children, columns, strict=True):
                    linked = self.link in table.c and self.link not in names
                    statement = self._insert_sql(table, [self.link, *names] if linked else names)
                    params = [
                        [pk, *self._values(table, row)] if linked else self._values(table, row)
                        for row in rows
                    ]
                    if len(params) == 1:
                        cursor.execute(statement, params[0])
                    else:
                        cursor.executemany(statement, params)
            finally:
                cursor.close()
        except dbapi_error as exc:
            # Raised as SQLAlchemy would, so callers catch the same IntegrityError and so on.
            raise DBAPIError.instance(statement, params, exc, dbapi_error) from exc
        return pk

    # ---- helpers -------------------------------------------------------------------------
    def _processor(self, column: Column[Any]) -> Any:
        if column not in self._processors:
            # The column type's own conversion (e.g. SQLite stores datetimes as ISO text).
            self._processors[column] = column.type._cached_bind_processor(self.dialect)
        return self._processors[column]

    def _values(self, table: Table, row: dict[str, Any]) -> list[Any]:
        out = []
        for name, value in row.items():
            process = self._processor(table.c[name])
            out.append(process(value) if process and value is not None else value)
        return out

    def _placeholder(self) -> str:
        return "%s" if self.dialect.paramstyle in ("format", "pyformat") else "?"

    def _insert_sql(self, table: Table, names: list[str], *, returning: bool = False) -> str:
        key = (table.name, *names, returning)
        sql = self._sql.get(key)
        if sql is None:
            marks = ", ".join([self._placeholder()] * len(names))
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
            if returning:
                sql += f" RETURNING {table.primary_key.columns[0].name}"
            self._sql[key] = sql
        return sql

    def _linked(self, table: Table, names: list[str]) -> bool:
        return self.link in table.c and self.link not in names

    def _sql_type(self, column: Column[Any]) -> str:
        # Strings as text, so the insert's assignment cast refuses a value too long for a
        # VARCHAR(n) (an explicit cast to VARCHAR(n) would silently cut it).
        if isinstance(column.type, String):
            return "text"
        return column.type.compile(dialect=self.dialect)

    def _cte(
        self, parent: Table, parent_names: list[str], children: list[Rows], columns: list[list[str]]
    ) -> str:
        """WITH p AS (INSERT parent RETURNING pk), c0 AS (INSERT ... SELECT p.pk, j.* FROM p,
        json_to_recordset(...) j) ... SELECT pk FROM p: the child inserts see the new key."""
        pk = parent.primary_key.columns[0].name
        parts = [f"p AS ({self._insert_sql(parent, parent_names, returning=True)})"]
        for i, ((table, rows), names) in enumerate(zip(children, columns, strict=True)):
            quoted = [f'"{n}"' for n in names]
            if self._linked(table, names):
                types = [self._sql_type(table.c[n]) for n in names]
                record = ", ".join(f"{q} {t}" for q, t in zip(quoted, types, strict=True))
                target = ", ".join([self.link, *quoted])
                source = (
                    f"SELECT p.{pk}, {', '.join('j.' + q for q in quoted)} "
                    f"FROM p, json_to_recordset(%s::json) AS j({record})"
                )
            else:
                row = "(" + ", ".join(["%s"] * len(names)) + ")"
                target, source = ", ".join(quoted), "VALUES " + ", ".join([row] * len(rows))
            parts.append(f"c{i} AS (INSERT INTO {table.name} ({target}) {source})")
        return f"WITH {', '.join(parts)} SELECT {pk} FROM p"
