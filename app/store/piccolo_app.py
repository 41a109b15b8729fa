"""The Piccolo app whose migrations live in the top-level `migrations/` folder."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from app.store.tables import (
    AuditEntry,
    RestartBatch,
    RunProcess,
    StepRun,
    WebSession,
    WorkflowRun,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

APP_CONFIG = AppConfig(
    app_name="runs",
    migrations_folder_path=str(REPO_ROOT / "migrations"),
    table_classes=[WorkflowRun, StepRun, RunProcess, WebSession, AuditEntry, RestartBatch],
    migration_dependencies=[],
    commands=[],
)
