"""schemathesis against our own OpenAPI document, over a real socket.

Every operation gets generated inputs, valid and invalid. Asserted: never a 5xx, every
status code is documented, every response (errors included) matches its declared schema
and content type.

Budget: 5 examples per operation in ``make test`` (the short profile; the whole suite has
15 minutes on two cores), 50 in ``make reliability`` (``PODSTACK_RELIABILITY_PROFILE=long``).
``PODSTACK_FUZZ_EXAMPLES`` overrides both. Hypothesis's health checks stay on, but for the two
that this set-up trips by design (see ``SUPPRESSED``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update

from podstack.server.auth.models import ApiToken, User
from podstack.server.auth.service import hash_token
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.reliability.conftest import PROFILE

# In `make test` (short profile) the fuzz runs once, on PostgreSQL: the production database,
# and the stricter one (types, lengths, encodings), so it is where a generated input can still
# reach a 5xx. `make reliability` (long profile) fuzzes both databases.
pytestmark = [pytest.mark.reliability] + ([pytest.mark.postgres_only] if PROFILE == "short" else [])

MAX_EXAMPLES = int(os.environ.get("PODSTACK_FUZZ_EXAMPLES", "50" if PROFILE == "long" else "5"))
# Only these, each for a reason; every other health check (filter_too_much, data_too_large,
# large_base_example, ...) still fails the test if it fires.
SUPPRESSED = [
    # Each example is a real HTTP round trip to a server process (and a database write to
    # reset the admin): slower than hypothesis expects of a pure function, by design.
    HealthCheck.too_slow,
    # ``keep_admin`` is function-scoped on purpose and is called inside the body, once per
    # example, which is what this check worries is forgotten.
    HealthCheck.function_scoped_fixture,
]


@pytest.fixture
def api_schema(live_server: LiveServer, db: Database) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{live_server.url}/api/v1/openapi.json")
    # A renamed route would otherwise silently end the restoring, and every later case would
    # test a 401.
    paths = loaded.raw_schema["paths"]
    assert all(method.lower() in paths.get(path, {}) for method, path in ADMIN_CHANGING)
    return loaded


# The only operations that can take the admin's power away: revoking a token, and demoting or
# disabling a user. Restoring after those alone, not before every case, saves two committed
# UPDATEs per case (a quarter of the fuzz's time on PostgreSQL).
ADMIN_CHANGING = {("DELETE", "/api/v1/tokens/{token_id}"), ("PATCH", "/api/v1/users/{username}")}


@pytest.fixture
def keep_admin(db: Database) -> Callable[[], None]:
    """Generated calls may revoke the admin token or demote/disable admin (that is allowed
    API behaviour); undo it after each such call so every operation is exercised as admin."""

    def restore() -> None:
        with db.session() as s:
            s.execute(
                update(ApiToken)
                .where(ApiToken.token_hash == hash_token(ADMIN_TOKEN))
                .values(revoked_at=None, expires_at=None)
            )
            s.execute(
                update(User).where(User.username == "admin").values(disabled=False, role="admin")
            )

    return restore


schema = schemathesis.pytest.from_fixture("api_schema")


# One test drives every operation (~115) in turn; the long profile's budget takes longer.
@pytest.mark.timeout(900 if MAX_EXAMPLES <= 8 else 3600)
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=SUPPRESSED)
def test_api_never_fails_and_matches_schema(
    case: schemathesis.Case, keep_admin: Callable[[], None]
) -> None:
    try:
        response = case.call(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    finally:
        if (case.method.upper(), case.path) in ADMIN_CHANGING:
            keep_admin()
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
