from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T22:56:58:266039"
VERSION = "1.38.0"
DESCRIPTION = "step_run.tool: a tool or sandbox call made during a node execution"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="runs", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="StepRun",
        tablename="step_run",
        column_name="tool",
        db_column_name="tool",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 100,
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
