"""`updated_at` on runs: stamped by the triggers of the next migration."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T17:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "updated_at on runs"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="runs", description=DESCRIPTION)
    manager.add_column(
        table_class_name="WorkflowRun",
        tablename="workflow_run",
        column_name="updated_at",
        db_column_name="updated_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
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
