"""The Piccolo app whose migrations live in the top-level `migrations/` folder."""

from piccolo.conf.apps import AppConfig

from app.store.db import APP_NAME, MIGRATIONS
from app.store.tables import (
    AuditEntry,
    RestartBatch,
    RunProcess,
    StepRun,
    WebSession,
    WorkflowRun,
)

APP_CONFIG = AppConfig(
    app_name=APP_NAME,
    migrations_folder_path=str(MIGRATIONS),
    table_classes=[WorkflowRun, StepRun, RunProcess, WebSession, AuditEntry, RestartBatch],
    migration_dependencies=[],
    commands=[],
)
