"""digest check --deliverability against a real DNS server on loopback: one good zone
and, per rule, a zone broken in that one way; every failure names the zone and carries the
record to publish."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.cli import main
from digest.delivery.dns_checks import (
    DnsError,
    Finding,
    Lookup,
    check_domain,
    resolver_lookup,
    spf_terms,
)
from tests.dns_server import Records, dns_server

pytestmark = pytest.mark.integration  # real servers on loopback (DNS, HTTP)


def _p(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


KEY_1024 = _p(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
KEY_512 = _p(rsa.RSAPublicNumbers(65537, (1 << 511) | 12345).public_key())

DMARC = "v=DMARC1; p=none; rua=mailto:reports@example.net"


def _zone(domain: str, **override: list[object]) -> Records:
    """A complete, good zone for ``domain`` sending through SendGrid."""
    records: Records = {
        (domain, "TXT"): ["v=spf1 ip4:192.0.2.0/24 include:sendgrid.net ~all", "site-verify=1"],
        (domain, "MX"): [(10, f"mx.{domain}")],
        (f"s1._domainkey.{domain}", "TXT"): [f"v=DKIM1; k=rsa; p={KEY_1024}"],
        (f"s2._domainkey.{domain}", "TXT"): [f"v=DKIM1; k=rsa; p={KEY_1024}"],
        (f"_dmarc.{domain}", "TXT"): [DMARC],
    }
    for key, value in override.items():
        name = {"spf": domain, "mx": domain, "s1": f"s1._domainkey.{domain}"}.get(
            key, f"_dmarc.{domain}"
        )
        kind = "MX" if key == "mx" else "TXT"
        records[(name, kind)] = value
    return records


ZONES: Records = {
    ("sendgrid.net", "TXT"): ["v=spf1 include:ab.sendgrid.net ~all"],
    ("ab.sendgrid.net", "TXT"): ["v=spf1 ip4:198.51.100.0/24 -all"],
    ("mailgun.org", "TXT"): ["v=spf1 ip4:203.0.113.0/24 -all"],
    ("default._bimi.good.test", "TXT"): ["v=BIMI1; l=https://good.test/logo.svg"],
    **_zone("good.test"),
    **_zone("replies.test"),
    **_zone("nospf.test", spf=["site-verify=1"]),
    **_zone("twospf.test", spf=["v=spf1 include:sendgrid.net ~all", "v=spf1 mx -all"]),
    **_zone("badspf.test", spf=["v=spf1 include:sendgrid.net ip4:300.1.1.1 ~all"]),
    **_zone("otherspf.test", spf=["v=spf1 include:mailgun.org ~all"]),
    **_zone("nodkim.test", s1=[]),
    **_zone("weakdkim.test", s1=[f"v=DKIM1; k=rsa; p={KEY_512}"]),
    **_zone("revoked.test", s1=["v=DKIM1; k=rsa; p="]),
    **_zone("nodmarc.test", dmarc=[]),
    **_zone("nopolicy.test", dmarc=["v=DMARC1; rua=mailto:x@nopolicy.test"]),
    **_zone("nomx.test", mx=[]),
    **_zone("nullmx.test", mx=[(0, ".")]),
}
# An SPF tree of 12 lookups: the record's 2 includes, 9 below a.deep.test, 1 in sendgrid.net.
ZONES |= _zone("deep.test", spf=["v=spf1 include:a.deep.test include:sendgrid.net ~all"])
ZONES[("a.deep.test", "TXT")] = ["v=spf1 a mx include:b.deep.test ~all"]
ZONES[("b.deep.test", "TXT")] = ["v=spf1 a mx ptr exists:x.deep.test include:c.deep.test ~all"]
ZONES[("c.deep.test", "TXT")] = ["v=spf1 a ip4:192.0.2.1 ~all"]


@pytest.fixture(scope="module")
def lookup() -> Iterator[Lookup]:
    with dns_server(ZONES) as (port, _resolver):
        yield resolver_lookup(["127.0.0.1"], port=port, timeout=5.0)


def _by_rule(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def _check(lookup: Lookup, domain: str, **kw: object) -> list[Finding]:
    return check_domain(lookup, domain, provider="sendgrid", **kw).findings  # type: ignore[arg-type]


def test_good_zone_passes_every_rule(lookup: Lookup) -> None:
    report = check_domain(lookup, "good.test", provider="sendgrid", reply_to_domain="replies.test")
    assert report.ok, [f for f in report.findings if f.failed]
    assert [(f.rule, f.name) for f in report.findings] == [
        ("spf", "good.test"),
        ("spf-lookups", "good.test"),
        ("spf-provider", "good.test"),
        ("dkim", "s1._domainkey.good.test"),
        ("dkim", "s2._domainkey.good.test"),
        ("dmarc", "_dmarc.good.test"),
        ("mx", "good.test"),
        ("mx", "replies.test"),
        ("bimi", "default._bimi.good.test"),
    ]
    rules = {f.rule: f for f in report.findings}
    assert rules["spf-lookups"].detail == "2 DNS lookups of 10"
    assert rules["spf-provider"].detail == "include:sendgrid.net found"
    assert rules["dkim"].detail == "a 1024-bit key"
    assert rules["dmarc"].detail == (
        "p=none: receivers only report; failing mail is still delivered (the minimum Gmail "
        "and Yahoo ask of bulk senders); DKIM alignment relaxed (a subdomain counts), SPF "
        "alignment relaxed (a subdomain counts); reports go to mailto:reports@example.net"
    )
    assert [f.detail for f in _by_rule(report.findings, "mx")] == [
        "From: 10 mx.good.test",
        "Reply-To: 10 mx.replies.test",
    ]
    assert rules["bimi"].detail == '"v=BIMI1; l=https://good.test/logo.svg"'


def test_spf_missing(lookup: Lookup) -> None:
    (spf,) = _by_rule(_check(lookup, "nospf.test"), "spf")
    assert (spf.ok, spf.name) == (False, "nospf.test")
    assert spf.detail.startswith("no SPF record")
    assert spf.publish == 'nospf.test. TXT "v=spf1 include:sendgrid.net ~all"'


def test_spf_two_records(lookup: Lookup) -> None:
    (spf,) = _by_rule(_check(lookup, "twospf.test"), "spf")
    assert not spf.ok
    assert spf.detail == "2 SPF records (a permanent error): merge them into one"
    assert spf.publish is not None and spf.publish.startswith("twospf.test. TXT")


def test_spf_syntax(lookup: Lookup) -> None:
    (spf,) = _by_rule(_check(lookup, "badspf.test"), "spf")
    assert not spf.ok
    assert spf.detail == "invalid SPF record: 'ip4:300.1.1.1' is not an IP address or range"
    assert spf.publish == 'badspf.test. TXT "v=spf1 include:sendgrid.net ~all"'
    with pytest.raises(ValueError, match="unknown mechanism 'foo:bar'"):
        spf_terms("v=spf1 foo:bar -all")


def test_spf_lookup_limit(lookup: Lookup) -> None:
    (count,) = _by_rule(_check(lookup, "deep.test"), "spf-lookups")
    assert not count.ok and count.failed
    assert count.detail.startswith("12 DNS lookups (the limit is 10): receivers give up")
    assert count.publish == 'deep.test. TXT "v=spf1 include:sendgrid.net ~all"'
    (good,) = _by_rule(_check(lookup, "good.test"), "spf-lookups")
    assert good.ok


def test_spf_provider_not_authorised(lookup: Lookup) -> None:
    (prov,) = _by_rule(_check(lookup, "otherspf.test"), "spf-provider")
    assert not prov.ok
    assert prov.detail == (
        "include:sendgrid.net is missing: the provider's servers are not authorised"
    )
    assert prov.publish == 'otherspf.test. TXT "v=spf1 include:sendgrid.net ~all"'
    # Through Mailgun, the same zone is right.
    mailgun = check_domain(lookup, "otherspf.test", provider="mailgun", dkim_selectors=["s2"])
    assert _by_rule(mailgun.findings, "spf-provider")[0].ok


def test_dkim_missing_weak_and_revoked(lookup: Lookup) -> None:
    publish = 's1._domainkey.{}. TXT "v=DKIM1; k=rsa; p=<public key from your provider>"'
    for domain, detail in [
        ("nodkim.test", "no DKIM key record"),
        ("weakdkim.test", "a 512-bit RSA key: receivers want at least 1024 (2048 is better)"),
        ("revoked.test", "invalid DKIM key: the key is revoked (empty p=)"),
    ]:
        s1, s2 = _by_rule(_check(lookup, domain), "dkim")
        assert (s1.ok, s1.name, s1.detail) == (False, f"s1._domainkey.{domain}", detail)
        assert s1.publish == publish.format(domain)
        assert s2.ok


def test_dkim_without_selector_says_which_to_set(lookup: Lookup) -> None:
    report = check_domain(lookup, "good.test", provider="postmark")
    (dkim,) = _by_rule(report.findings, "dkim")
    assert not dkim.ok
    assert "set deliverability.dkim_selectors" in dkim.detail
    assert "Postmark's DKIM selector is dated" in dkim.detail


@pytest.mark.parametrize(
    ("provider", "where"),
    [
        ("mailgun", "Mailgun makes a selector per domain, shown under Sending > Domain "
         "settings > DNS records (and in the provider findings below)"),
        ("brevo", "Brevo shows the DKIM record's host under Senders, Domains & Dedicated IPs "
         "> Domains (and in the provider findings below)"),
    ],
)  # fmt: skip
def test_mailgun_and_brevo_selectors_are_required_settings(
    lookup: Lookup, provider: str, where: str
) -> None:
    """Neither documents a fixed selector: none is guessed, and the finding says where to
    find the domain's own."""
    (dkim,) = _by_rule(check_domain(lookup, "good.test", provider=provider).findings, "dkim")
    assert (dkim.ok, dkim.name) == (False, "<selector>._domainkey.good.test")
    assert dkim.detail == (
        "no DKIM selector to look up: set deliverability.dkim_selectors to the selector(s) "
        f"your provider shows ({where})"
    )


def test_dmarc_missing_and_without_policy(lookup: Lookup) -> None:
    (missing,) = _by_rule(_check(lookup, "nodmarc.test"), "dmarc")
    assert (missing.ok, missing.name) == (False, "_dmarc.nodmarc.test")
    assert missing.publish == (
        '_dmarc.nodmarc.test. TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@nodmarc.test"'
    )
    (nopolicy,) = _by_rule(_check(lookup, "nopolicy.test"), "dmarc")
    assert (nopolicy.ok, nopolicy.detail) == (False, "no valid policy (p=missing)")


def test_dmarc_found_on_the_organisational_domain(lookup: Lookup) -> None:
    (dmarc,) = _by_rule(_check(lookup, "news.good.test"), "dmarc")
    assert (dmarc.ok, dmarc.name) == (True, "_dmarc.good.test")


def test_mx_missing_and_null(lookup: Lookup) -> None:
    (mx,) = _by_rule(_check(lookup, "nomx.test"), "mx")
    assert (mx.ok, mx.detail) == (False, "no MX record: mail to the From domain bounces")
    assert mx.publish == "nomx.test. MX 10 <your mail server>."
    findings = _check(lookup, "good.test", reply_to_domain="nullmx.test")
    _from, reply = _by_rule(findings, "mx")
    assert (reply.ok, reply.name) == (False, "nullmx.test")
    assert reply.detail == "a null MX: the Reply-To domain takes no mail"


def test_bimi_absent_is_reported_not_failed(lookup: Lookup) -> None:
    (bimi,) = _by_rule(_check(lookup, "nodmarc.test"), "bimi")
    assert (bimi.ok, bimi.severity, bimi.detail) == (True, "info", "no BIMI record (optional)")


def test_unreachable_server_is_an_error_not_a_missing_record() -> None:
    with dns_server({}) as (port, _):
        pass  # stopped: nothing answers on that port any more
    lookup = resolver_lookup(["127.0.0.1"], port=port, timeout=0.5)
    with pytest.raises(DnsError, match=r"DNS: no answer for TXT good\.test"):
        lookup("good.test", "TXT")


# ------------------------------------------------------------------ digest check --deliverability


def _site_zone(dmarc: list[object]) -> Records:
    domain = "fieldnotes.example.com"
    zone = _zone(domain)
    zone[(f"_dmarc.{domain}", "TXT")] = dmarc
    return {**zone, ("sendgrid.net", "TXT"): ["v=spf1 ip4:198.51.100.0/24 -all"]}


def _run_check(site: Path, port: int, *args: str) -> Result:
    with (site / "config.yaml").open("a", encoding="utf-8") as config:
        config.write(
            "\ndeliverability:\n  nameservers: [127.0.0.1]\n"
            f"  dns_port: {port}\n  spf_include: sendgrid.net\n  dkim_selectors: [s1, s2]\n"
        )
    return CliRunner().invoke(
        main, ["--config", str(site / "config.yaml"), "check", "--deliverability", *args]
    )


def test_cli_good_domain_exits_0(sample_site: Path) -> None:
    with dns_server(_site_zone([DMARC])) as (port, resolver):
        result = _run_check(sample_site, port)
    assert result.exit_code == 0, result.output
    assert "deliverability: fieldnotes.example.com via outbox" in result.output
    assert "  dmarc _dmarc.fieldnotes.example.com: ok: p=none" in result.output
    assert "FAILED" not in result.output
    # Every question went to the loopback server, and the MX of both domains was asked.
    assert ("fieldnotes.example.com", "MX") in resolver.questions


def test_cli_broken_domain_exits_1_naming_the_record(sample_site: Path) -> None:
    with dns_server(_site_zone([])) as (port, _):
        result = _run_check(sample_site, port)
    assert result.exit_code == 1, result.output
    assert (
        "  dmarc _dmarc.fieldnotes.example.com: FAILED: no DMARC record: Gmail and Yahoo "
        "require one (p=none at least) for bulk mail\n"
        '    publish: _dmarc.fieldnotes.example.com. TXT "v=DMARC1; p=none; '
        'rua=mailto:dmarc-reports@fieldnotes.example.com"\n'
    ) in result.output


def test_cli_json(sample_site: Path) -> None:
    with dns_server(_site_zone([])) as (port, _):
        result = _run_check(sample_site, port, "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    failed = [f["name"] for f in data["findings"] if not f["ok"] and f["severity"] == "fail"]
    assert failed == ["_dmarc.fieldnotes.example.com"]


def test_a_bad_nameserver_is_named() -> None:
    with pytest.raises(DnsError, match=r"^DNS: cannot set up the resolver: "):
        resolver_lookup(["not-an-address"])
