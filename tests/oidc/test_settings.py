"""Single sign-on settings: a wrong or partial configuration stops the server at start with a
message naming the setting (and never echoing the client secret)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from podstack.server.auth import oidc
from podstack.server.config import Settings

pytestmark = pytest.mark.one_db

GOOD = {
    "oidc_issuer": "https://sso.example.com/realms/acme",
    "oidc_client_id": "podstack",
    "oidc_client_secret": "s3cr3t-value",
}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"oidc_client_secret": None}, "PODSTACK_OIDC_CLIENT_SECRET is not set"),
        ({"oidc_issuer": None, "oidc_client_id": None}, "are not set"),
        ({"oidc_issuer": "http://sso.example.com"}, "must use https://"),
        ({"oidc_issuer": "https://sso.example.com/?x=1"}, "without query"),
        ({"oidc_scopes": "profile email"}, "must include 'openid'"),
        ({"oidc_default_role": "owner"}, "PODSTACK_OIDC_DEFAULT_ROLE"),
        ({"oidc_group_roles": "ml-admins=root"}, "ml-admins=root"),
        ({"oidc_group_roles": "ml-admins"}, "<group>=<role>"),
    ],
)
def test_bad_configuration_is_refused_at_start(changes: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**{**GOOD, **changes})
    assert needle in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_good_configuration_and_role_mapping() -> None:
    settings = Settings(**GOOD, oidc_group_roles=" ml-admins = admin , ml=Editor ")
    config = oidc.config_of(settings)
    assert config is not None and config.issuer == GOOD["oidc_issuer"]
    assert config.provider_name == "sso.example.com"
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in repr(config)
    assert oidc.role_for(config, []) == "viewer"
    assert oidc.role_for(config, ["ml", "other"]) == "editor"
    assert oidc.role_for(config, ["ml", "ml-admins"]) == "admin"
    # Loopback issuers may use http (a provider on the same machine).
    assert oidc.config_of(Settings(**{**GOOD, "oidc_issuer": "http://127.0.0.1:9400"}))
    assert oidc.config_of(Settings()) is None  # off by default
