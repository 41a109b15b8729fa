from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-01T11:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "run_process.concurrency: how many runs a queue worker executes at once"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="runs", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="RunProcess",
        tablename="run_process",
        column_name="concurrency",
        db_column_name="concurrency",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    return manager
