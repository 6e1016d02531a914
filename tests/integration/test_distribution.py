"""The schema stays distributable by tenant (docs/scaling.md), on both backends: read from the
catalog after every migration, each table holding tenant data has its distribution column in
its primary key, in every unique index and in every foreign key; the others are reference
tables that point at no tenant table; and docs/scaling.md distributes exactly these tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.storage import Conn, open_database
from gateway.storage.distribution import REFERENCE_TABLES, citus_statements, distribution_column

SCALING_DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"


@dataclass
class Table:
    primary_key: list[str] = field(default_factory=list)
    unique: dict[str, list[str]] = field(default_factory=dict)  # index name -> columns
    foreign_keys: list[tuple[list[str], str]] = field(default_factory=list)  # (columns, referenced table)


async def sqlite_catalog(conn: Conn) -> dict[str, Table]:
    tables: dict[str, Table] = {}
    names = await conn.fetch(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    for name in (row["name"] for row in names):
        table = tables[name] = Table()
        columns = await conn.fetch(f"PRAGMA table_info({name})")
        table.primary_key = [c["name"] for c in sorted(columns, key=lambda c: c["pk"]) if c["pk"]]
        for index in await conn.fetch(f"PRAGMA index_list({name})"):
            if index["unique"]:
                info = await conn.fetch(f"PRAGMA index_info({index['name']})")
                table.unique[index["name"]] = [c["name"] for c in info]
        by_id: dict[int, tuple[list[str], str]] = {}
        for fk in await conn.fetch(f"PRAGMA foreign_key_list({name})"):
            by_id.setdefault(fk["id"], ([], fk["table"]))[0].append(fk["from"])
        table.foreign_keys = list(by_id.values())
    return tables


_PG_TABLES = (
    "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace"
)
_PG_UNIQUE = (
    "SELECT t.relname AS table_name, i.relname AS index_name, x.indisprimary AS is_primary,"
    " array(SELECT a.attname::text FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)"
    " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n) AS columns"
    " FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid"
    " WHERE x.indisunique AND t.relnamespace = current_schema()::regnamespace"
)
_PG_FOREIGN_KEYS = (
    "SELECT t.relname AS table_name, r.relname AS referenced,"
    " array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey))"
    " AS columns FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid"
    " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"
)


async def postgres_catalog(conn: Conn) -> dict[str, Table]:
    tables = {row["relname"]: Table() for row in await conn.fetch(_PG_TABLES)}
    for row in await conn.fetch(_PG_UNIQUE):
        table = tables[row["table_name"]]
        if row["is_primary"]:
            table.primary_key = list(row["columns"])
        table.unique[row["index_name"]] = list(row["columns"])
    for row in await conn.fetch(_PG_FOREIGN_KEYS):
        tables[row["table_name"]].foreign_keys.append((list(row["columns"]), row["referenced"]))
    return tables


async def read_catalog(backend) -> dict[str, Table]:
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()  # applies every migration
    try:
        async with db.read() as conn:
            return await (sqlite_catalog(conn) if db.dialect == "sqlite" else postgres_catalog(conn))
    finally:
        await db.close()


def distribution_problems(tables: dict[str, Table]) -> list[str]:
    """What keeps `tables` from being distributed by tenant as gateway.storage.distribution says."""
    problems = [f"{name}: listed as a reference table but no migration creates it"
                for name in REFERENCE_TABLES if name not in tables]  # fmt: skip
    for name, table in sorted(tables.items()):
        if name in REFERENCE_TABLES:
            problems += [f"{name}: a reference table with a foreign key to the tenant table {target}"
                         for _, target in table.foreign_keys if target not in REFERENCE_TABLES]  # fmt: skip
            continue
        column = distribution_column(name)
        if column not in table.primary_key:
            problems.append(f"{name}: {column} is not in the primary key {table.primary_key}")
        problems += [f"{name}: {column} is not in the unique index {index} {columns}"
                     for index, columns in table.unique.items() if column not in columns]  # fmt: skip
        problems += [f"{name}: {column} is not in the foreign key {columns} -> {target}"
                     for columns, target in table.foreign_keys if column not in columns]  # fmt: skip
    return problems


async def test_every_tenant_table_is_keyed_by_tenant_and_the_others_are_reference_tables(backend):
    tables = await read_catalog(backend)
    assert "actions" in tables and "tenants" in tables  # the catalog was read at all
    assert distribution_problems(tables) == []


async def test_the_rules_catch_a_table_keyed_without_its_tenant(backend):
    """The check itself: the keys the schema had before migration 23 break it."""
    tables = await read_catalog(backend)
    tables["approvals"].primary_key = ["action_id", "signer"]
    tables["webhooks"].unique["webhooks_token"] = ["token"]
    tables["limit_claims"].foreign_keys.append((["action_id"], "actions"))
    tables["api_keys"].foreign_keys.append((["tenant_id"], "tenants"))
    tables["new_tenant_table"] = Table(primary_key=["id"])
    problems = distribution_problems(tables)
    assert [p.split(":")[0] for p in problems] == [
        "api_keys", "approvals", "limit_claims", "new_tenant_table", "webhooks",
    ]  # fmt: skip


async def test_the_scaling_guide_distributes_every_table(backend):
    tables = await read_catalog(backend)
    text = SCALING_DOC.read_text()
    missing = [line for line in citus_statements(sorted(tables)) if line not in text]
    assert missing == []


MIGRATION = 23
REKEYED = (
    "actions",
    "approvals",
    "api_keys",
    "webhooks",
    "webhook_deliveries",
    "console_sessions",
    "limit_claims",
)


async def column_types(conn: Conn, table: str) -> dict[str, str]:
    if conn.dialect == "sqlite":
        return {c["name"]: c["type"].lower() for c in await conn.fetch(f"PRAGMA table_info({table})")}
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?",
        table,
    )
    return {row["column_name"]: row["data_type"] for row in rows}


def row_values(table: str, types: dict[str, str], n: int) -> dict[str, object]:
    """A row with every column set (so that a column lost or swapped by the migration shows)."""
    values: dict[str, object] = {}
    for column, kind in types.items():
        values[column] = n * 100 + len(values) if "int" in kind else f"{table}.{column}.{n}"
    values["tenant_id"] = "t1"
    return values


async def test_migration_23_keeps_every_row_of_the_tables_it_rekeys(backend, monkeypatch):
    from gateway.storage import schema

    earlier = [m for m in schema.MIGRATIONS if m[0] < MIGRATION]
    monkeypatch.setattr(schema, "MIGRATIONS", earlier)
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()
    before: dict[str, list[dict[str, object]]] = {}
    try:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO tenants (id, name, chain_id, verifying_contract, created_at) VALUES (?, ?, ?, ?, ?)",
                "t1", "Tenant", 1, "0x" + "00" * 20, "2026-12-02T00:00:00Z",
            )  # fmt: skip
            for table in REKEYED:
                types = await column_types(conn, table)
                for n in (1, 2):
                    values = row_values(table, types, n)
                    if table in ("api_keys", "console_sessions") and n == 2:
                        values["tenant_id"] = None  # an operator key; a session before it picks a tenant
                    columns = ", ".join(values)
                    await conn.execute(
                        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(values))})",
                        *values.values(),
                    )
                before[table] = sorted(await conn.fetch(f"SELECT * FROM {table}"), key=repr)
    finally:
        await db.close()
    monkeypatch.undo()
    db = open_database(backend.url, data_dir=backend.data_dir, schema=backend.schema)
    await db.open()  # applies migration 23 to those rows
    try:
        async with db.read() as conn:
            assert (await conn.fetchrow("SELECT max(version) AS v FROM schema_migrations"))["v"] >= MIGRATION
            for table in REKEYED:
                after = sorted(await conn.fetch(f"SELECT * FROM {table}"), key=repr)
                assert after == before[table], table
                assert len(after) == 2, table
    finally:
        await db.close()
