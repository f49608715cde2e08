"""The link checker against a real HTTP server on loopback: good, 404, redirecting,
redirect-looping, slow and HEAD-refusing links; the sample site's issue with a planted
broken link and image, each named with its post; 200 links in one run."""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from digest.cli import main
from digest.email.linkcheck import LinkCache, Outcome, Reach, check_urls

pytestmark = pytest.mark.integration  # real servers on loopback (DNS, HTTP)

BROKEN_POST = "small-samples-honest-claims"
LOOPBACK = Reach(allow_private=True)  # these tests' links all live on loopback


class Links(BaseHTTPRequestHandler):
    """/ok, /img/ok.png: 200; /missing, /img/missing.png and the broken post: 404;
    /redirect/N: 301 to /ok/N; /loop: redirects to itself; /slow: answers after 2 s;
    /nohead and /nohead501: refuse HEAD (405, 501) and answer GET."""

    requests: ClassVar[Counter[tuple[str, str]]] = Counter()
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, method: str) -> None:
        path = self.path.split("?")[0]
        with self.lock:
            self.requests[(method, path)] += 1
        status, location = 200, None
        if path.startswith(("/missing", "/img/missing")) or path == f"/posts/{BROKEN_POST}":
            status = 404
        elif path.startswith("/redirect/"):
            status, location = 301, "/ok/" + path.rsplit("/", 1)[1]
        elif path.startswith("/away/"):  # /away/HOST:PORT/PATH: 302 to http://HOST:PORT/PATH
            status, location = 302, "http://" + path.removeprefix("/away/")
        elif path.startswith("/loop"):
            status, location = 302, path
        elif path.startswith("/slow"):
            time.sleep(2)
        elif path.startswith("/nohead") and method == "HEAD":
            status = 501 if path.startswith("/nohead501") else 405
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if method == "GET":
            self.wfile.write(b"ok")

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_GET(self) -> None:
        self._answer("GET")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 200 links at once: no connection waits on a full backlog


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the email shows https images only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextmanager
def serve(tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    Links.requests = Counter()
    httpd = Server(("127.0.0.1", 0), Links)
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    with serve() as url:
        yield url


def test_each_kind_of_link(server: str, tmp_path: Path) -> None:
    urls = {
        "ok": f"{server}/ok/1",
        "missing": f"{server}/missing/1",
        "redirect": f"{server}/redirect/2",
        "loop": f"{server}/loop",
        "slow": f"{server}/slow/1",
        "nohead": f"{server}/nohead/1",
        "nohead501": f"{server}/nohead501/1",
        "refused": "http://127.0.0.1:9/nobody-listens",
    }
    cache = LinkCache(tmp_path / "links.json", now=1_000_000.0)
    got = check_urls(list(urls.values()), cache=cache, timeout=0.5, max_redirects=3, reach=LOOPBACK)
    view = {k: (got[u].ok, got[u].status) for k, u in urls.items()}
    assert view == {
        "ok": (True, 200),
        "missing": (False, 404),
        "redirect": (True, 200),
        "loop": (False, None),
        "slow": (False, None),
        "nohead": (True, 200),
        "nohead501": (True, 200),
        "refused": (False, None),
    }
    assert got[urls["redirect"]].detail == f"HTTP 200 (redirected to {server}/ok/2)"
    assert got[urls["loop"]].detail == "more than 3 redirects"
    assert got[urls["slow"]].detail == "no answer within 0.5 s"
    assert got[urls["missing"]].detail == "HTTP 404"
    assert got[urls["refused"]].detail.startswith("cannot connect: ")
    # HEAD first; GET only where HEAD was refused
    assert Links.requests[("GET", "/ok/1")] == 0
    assert Links.requests[("HEAD", "/nohead/1")] == 1
    assert Links.requests[("GET", "/nohead/1")] == 1
    # Good answers are kept for a day (and only good ones); a day later they are asked again.
    assert sorted(json.loads((tmp_path / "links.json").read_text())) == sorted(
        urls[k] for k in ("ok", "redirect", "nohead", "nohead501")
    )
    again = check_urls(
        [urls["ok"], urls["missing"]], cache=LinkCache(cache.path, 1_050_000.0), reach=LOOPBACK
    )
    assert again[urls["ok"]] == Outcome(urls["ok"], True, None, "checked within a day", True)
    assert Links.requests[("HEAD", "/ok/1")] == 1
    assert Links.requests[("HEAD", "/missing/1")] == 2  # a broken link is asked every time
    later = check_urls(
        [urls["ok"]], cache=LinkCache(cache.path, 1_000_000.0 + 86_401), reach=LOOPBACK
    )
    assert not later[urls["ok"]].cached
    assert Links.requests[("HEAD", "/ok/1")] == 2


def test_ssrf_links_to_private_addresses_are_refused_not_fetched(server: str) -> None:
    """A post's link or image (a feed author's text) to loopback, a private network or the
    cloud's metadata address is named as refused and never requested; so is a redirect
    to one, even from the site's own origin (which is fetched wherever it is)."""
    port = server.rsplit(":", 1)[1]
    direct = f"{server}/ok/1"
    private = ["http://10.0.0.7/x", "http://169.254.169.254/latest/meta-data/", "http://[::1]/"]
    by_name = f"http://rebinding.example:{port}/ok/2"
    away = f"{server}/away/localhost:{port}/ok/3"
    own = f"{server}/ok/4"
    reach = Reach(own=frozenset({server}), resolver=lambda host, _port: ["127.0.0.1"])
    got = check_urls([direct, *private, by_name], reach=Reach(resolver=reach.resolver))
    got.update(check_urls([away, own], reach=reach, max_redirects=3))
    view = {url: (o.ok, o.detail) for url, o in got.items()}
    refused = "refused, not fetched: "
    assert view == {
        direct: (False, f"{refused}{direct}: 127.0.0.1 is not a public address"),
        private[0]: (False, f"{refused}{private[0]}: 10.0.0.7 is not a public address"),
        private[1]: (False, f"{refused}{private[1]}: 169.254.169.254 is not a public address"),
        private[2]: (False, f"{refused}{private[2]}: ::1 is not a public address"),
        by_name: (
            False,
            f"{refused}{by_name}: rebinding.example resolves to 127.0.0.1, not a public address",
        ),
        away: (
            False,
            f"{refused}http://localhost:{port}/ok/3: localhost resolves to 127.0.0.1, "
            "not a public address",
        ),
        own: (True, "HTTP 200"),
    }
    # only the site's own URLs reached the server: the redirect, and the good link
    assert dict(Links.requests) == {
        ("HEAD", f"/away/localhost:{port}/ok/3"): 1,
        ("HEAD", "/ok/4"): 1,
    }


def test_200_links(server: str) -> None:
    kinds = ["ok", "missing", "redirect", "nohead"]
    urls = [f"{server}/{kinds[i % 4]}/{i}" for i in range(196)]
    urls += [f"{server}/slow/{i}" for i in range(4)]
    started = time.perf_counter()
    got = check_urls(urls, timeout=1.0, concurrency=16, reach=LOOPBACK)
    elapsed = time.perf_counter() - started
    assert len(got) == 200
    bad = sorted(u for u, o in got.items() if not o.ok)
    assert bad == sorted([u for u in urls if "/missing/" in u or "/slow/" in u])
    assert len(bad) == 49 + 4
    print(f"200 links checked in {elapsed:.2f} s")


def test_check_email_names_the_post_of_each_broken_link(
    sample_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))  # httpx trusts the test's certificate
    with serve(tls) as server:
        _check_site(sample_site, server)


def _check_site(sample_site: Path, server: str) -> None:
    # Every address of the site and its posts points at the loopback server.
    for path in [sample_site / "config.yaml", *(sample_site / "content").rglob("*.md")]:
        text = path.read_text(encoding="utf-8")
        text = text.replace("https://fieldnotes.example.com", server)
        path.write_text(text.replace("http://127.0.0.1:8025", server), encoding="utf-8")
    config = sample_site / "config.yaml"
    post = sample_site / "content" / "posts" / "monday-reset-for-small-teams.md"
    post.write_text(
        post.read_text(encoding="utf-8").replace(
            "---\n", f"---\ncover_image: {server}/img/missing.png\n", 1
        ),
        encoding="utf-8",
    )
    args = ["--config", str(config), "check", "--email", "--week", "2026-W47"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = [
        line
        for line in result.output.splitlines()
        if line.startswith(("links", "  link", "  image"))
    ]
    assert re.fullmatch(
        r"links: FAILED: \d+ links and images checked \(0 from the last day\), 2 broken",
        lines[0],
    ), lines
    assert sorted(lines[1:]) == sorted(
        [
            f"  link {server}/posts/{BROKEN_POST}?utm_source=digest&utm_medium=email"
            f"&utm_campaign=2026-W47: HTTP 404 in {BROKEN_POST}.md (Small Samples, Honest Claims)",
            f"  image {server}/img/missing.png: HTTP 404 in monday-reset-for-small-teams.md "
            "(A Monday Reset for Small Teams)",
        ]
    )
    offline = CliRunner().invoke(main, [*args, "--offline"])
    assert "links:" not in offline.output
