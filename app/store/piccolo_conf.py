"""Piccolo's configuration: the engine named by DATABASE_URL, and our app.

`app.store.db.configure()` may swap `DB` for another engine at start-up (tests,
`create_app(settings)`); the tables and the migration runner both follow it.
"""

import os

from piccolo.conf.apps import AppRegistry

from app.settings import normalise_database_url
from app.store.engine import engine_from_url

DB = engine_from_url(normalise_database_url(os.environ.get("DATABASE_URL")))

APP_REGISTRY = AppRegistry(apps=["app.store.piccolo_app"])
