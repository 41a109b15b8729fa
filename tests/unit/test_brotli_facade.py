"""The server's brotli facade: what it writes decodes, and it holds no encoder after."""

from __future__ import annotations

from io import BytesIO

import brotli

from app.web.app import COMPRESSION
from app.web.compression import Brotli


def test_a_finished_body_lets_its_encoder_go() -> None:
    buffer = BytesIO()
    facade = Brotli(buffer=buffer, compression_encoding="br", config=COMPRESSION)
    body = b"<tr><td>run</td></tr>\n" * 2000
    facade.write(body[:10_000])
    facade.write(body[10_000:])
    facade.close()
    assert brotli.decompress(buffer.getvalue()) == body
    # An encoder is about 1.5 MB; the facade itself lives on until the garbage collector
    # breaks the middleware's cycle.
    assert not hasattr(facade, "compressor")
    assert COMPRESSION.compression_facade is Brotli
