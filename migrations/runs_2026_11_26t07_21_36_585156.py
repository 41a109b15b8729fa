from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-26T07:21:36:585156"
VERSION = "1.38.0"
DESCRIPTION = "job id of the run in the queue execution mode"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="runs", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="WorkflowRun",
        tablename="workflow_run",
        column_name="job_id",
        db_column_name="job_id",
        column_class_name="BigInt",
        column_class=BigInt,
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
