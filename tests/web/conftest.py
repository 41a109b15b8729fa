"""An app under Litestar's test client, on the session database, with a frozen clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from support import app_settings

from app.web.app import create_app


@pytest.fixture
async def client(empty_db: str, clock: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(app_settings(empty_db), clock=clock, migrate=False, pool=False)
    async with AsyncTestClient(app=app) as c:
        yield c
