"""The run store: Piccolo tables, the engine, migrations and every query.

`PICCOLO_CONF` must name our config before Piccolo looks for one, so it is set
here, before anything imports the tables.
"""

import os

os.environ.setdefault("PICCOLO_CONF", "app.store.piccolo_conf")
