"""The database: connection, models, migrations, row reads, sealed secret columns.

- `db`: SQLite or PostgreSQL behind one peewee proxy, write transactions.
- `models`: the tables.
- `migrations`: schema versions and upgrades.
- `rows`: one row by primary key with prebuilt SQL.
- `vault`: sealing and opening the models' secret columns, key rotation.

May import: `core.errors`, `core.security`, `core.platform`.
"""
