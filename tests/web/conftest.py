"""An app under Litestar's test client, on the session database, with a frozen clock."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from support import OPERATOR, VIEWER, app_settings

from app.web.app import create_app


@pytest.fixture
async def client(empty_db: str, clock: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(app_settings(empty_db), clock=clock, migrate=False, pool=False)
    async with AsyncTestClient(app=app) as c:
        yield c


@pytest.fixture
async def secured(empty_db: str, clock: Any) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with an operator and a viewer token (support.OPERATOR, support.VIEWER)."""
    settings = dataclasses.replace(
        app_settings(empty_db),
        operator_tokens=(OPERATOR,),
        viewer_tokens=(VIEWER,),
        secret="a-test-secret-0123456789abcdefghij",
    )
    app = create_app(settings, clock=clock, migrate=False, pool=False)
    async with AsyncTestClient(app=app) as c:
        yield c
