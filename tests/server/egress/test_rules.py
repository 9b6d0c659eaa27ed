"""The egress rules on their own (no sockets: names are answered by an injected resolver)."""

from __future__ import annotations

import httpx
import pydantic
import pytest

from podstack.errors import ValidationFailed
from podstack.server import egress
from podstack.server.config import Settings


def answers(table: dict[str, list[str]]) -> egress.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


def test_every_resolved_address_must_pass() -> None:
    dual = answers({"mixed.example": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(egress.Refused, match=r"resolves to 10\.1\.2\.3, a private address"):
        egress.check("https://mixed.example/h", egress.AllowList(), resolver=dual)
    public = answers({"pub.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    dest = egress.check("https://pub.example/h", egress.AllowList(), resolver=public)
    assert dest.addresses == ("93.184.216.34", "2606:2800:220:1::1") and dest.port == 443


def test_metadata_needs_an_exact_entry() -> None:
    meta = answers({"metadata.google.internal": ["169.254.169.254"]})
    broad = egress.AllowList.parse("169.254.0.0/16, *.internal, fd00::/8")
    for url in (
        "http://169.254.169.254/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/",
    ):
        with pytest.raises(egress.Refused, match="metadata"):
            egress.check(url, broad, resolver=meta)
    # The range does allow the rest of link-local.
    assert egress.check("http://169.254.10.20/", broad).addresses == ("169.254.10.20",)
    exact = egress.AllowList.parse("169.254.169.254, metadata.google.internal")
    assert egress.check("http://169.254.169.254/", exact).host == "169.254.169.254"
    assert egress.check("http://metadata.google.internal/", exact, resolver=meta).addresses == (
        "169.254.169.254",
    )


def test_allow_list_entries() -> None:
    allow = egress.AllowList.parse(" 10.20.0.0/16 , ci.corp.example., *.hooks.internal, ::1 ")
    hosts = answers(
        {
            "ci.corp.example": ["10.99.0.1"],
            "a.hooks.internal": ["192.168.0.5"],
            "hooks.internal": ["192.168.0.5"],
        }
    )
    assert egress.check("http://10.20.3.4/", allow).addresses == ("10.20.3.4",)
    assert egress.check("http://[::1]:9/", allow).addresses == ("::1",)
    assert egress.check("http://ci.corp.example/", allow, resolver=hosts)
    assert egress.check("http://a.hooks.internal/", allow, resolver=hosts)
    with pytest.raises(egress.Refused):  # "*.x" is subdomains only
        egress.check("http://hooks.internal/", allow, resolver=hosts)
    with pytest.raises(egress.Refused):
        egress.check("http://10.21.0.1/", allow)
    for bad in ("10.0.0.0/33", "http://x", "a b", "fe80::/200", "exa_mple$"):
        with pytest.raises(ValueError, match="PODSTACK_OUTBOUND_ALLOW"):
            egress.AllowList.parse(bad)
    with pytest.raises(pydantic.ValidationError, match="neither a CIDR"):
        Settings(outbound_allow="10.0.0.0/33")


def test_form_rules() -> None:
    for url, reason in [
        ("ftp://example.com/", "scheme 'ftp'"),
        ("http:///nohost", "no host"),
        ("http://exa mple.com/", "whitespace"),
        ("http://evil.example\\@127.0.0.1/", "backslash"),
        ("http://a:b@example.com/", "user name or password"),
        ("http://@example.com/", "user name or password"),
    ]:
        with pytest.raises(egress.Refused, match=reason):
            egress.check(url, egress.AllowList(), resolver=answers({}))


def test_validate_url_accepts_names_that_do_not_resolve_yet() -> None:
    settings = Settings(outbound_allow="")
    nowhere = answers({})
    url = " https://hooks.example/podstack "
    assert egress.validate_url(url, settings, resolver=nowhere) == url.strip()
    with pytest.raises(ValidationFailed) as err:
        egress.validate_url("http://a:b@hooks.example/", settings, resolver=nowhere)
    assert "a:b" not in err.value.message  # credentials are not echoed back


def test_answers_are_described_by_status_and_size_only() -> None:
    r = httpx.Response(503, content=b"<html>internal dashboard</html>")
    text = egress.describe_answer("POST", "https://u:p@ci.example/hook?token=t#f", r)
    assert text == "POST https://ci.example/hook answered HTTP 503 (31 bytes)"
