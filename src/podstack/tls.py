"""One TLS context per process for the default certificate checks.

httpx builds a fresh ``ssl.SSLContext`` for every client and transport, even for ``http://``
URLs, and building one parses the whole CA bundle: about 25 ms of CPU, more than most calls
it then serves. Every HTTP client Podstack creates (the SDK, direct transfers, outbound
requests, the MLflow importer) shares this one instead. An ``SSLContext`` is safe to share
between threads. ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` are read once, when it is first built.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``)."""
    return httpx.create_ssl_context(trust_env=True)
