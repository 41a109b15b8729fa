"""Piccolo's configuration, for its migration runner and command line: the engine
`app.store.db` talks to (named by DATABASE_URL unless configured otherwise), and our app.

The process itself does not import this module: `app.store.db` keeps the engine and
hands it over here before it runs migrations.
"""

from piccolo.conf.apps import AppRegistry

from app.store.db import current_engine

DB = current_engine()

APP_REGISTRY = AppRegistry(apps=["app.store.piccolo_app"])
