"""Feeds as sources: a cold load, a warm load (every feed answers 304), and a baseline.

    python bench/bench_sources.py [--feeds 20] [--entries 50] [--runs 3]

A server on 127.0.0.1 serves ``--feeds`` WordPress-shaped RSS feeds of ``--entries`` entries
each (full ``content:encoded`` bodies), with ETag and Last-Modified. The baseline, measured in
the same run against the same server, is the loop any script would write: GET every feed and
``feedparser.parse`` it. digest's cold load fetches, parses, sanitises and caches every feed;
its warm load sends conditional requests, gets 304s and parses nothing. Each measurement runs
in its own process, so its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAGRAPH = (
    "<p>A paragraph of an ordinary blog post, long enough to look like one, with a "
    '<a href="/elsewhere/">relative link</a>, some <em>emphasis</em> and &amp; entities.</p>'
)


def make_feed(number: int, entries: int) -> bytes:
    items = []
    for n in range(entries):
        day = 1 + n % 28
        items.append(
            f"<item><title>Post {number}-{n} &#8211; a title</title>"
            f"<link>https://blog{number}.example.com/2026/11/{day:02d}/post-{n}/</link>"
            f'<guid isPermaLink="false">https://blog{number}.example.com/?p={n}</guid>'
            f"<pubDate>Mon, {day:02d} Nov 2026 09:{n % 60:02d}:00 +0100</pubDate>"
            f"<category><![CDATA[Work]]></category>"
            f"<description><![CDATA[A summary of post {n} that says what it is about "
            f"[&#8230;]]]></description>"
            f"<content:encoded><![CDATA[{PARAGRAPH * 20}<script>x()</script>]]>"
            f"</content:encoded></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>Blog {number}</title><link>https://blog{number}.example.com</link>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def serve(feeds: dict[str, bytes]) -> tuple[ThreadingHTTPServer, str]:
    tags = {path: '"' + hashlib.sha256(body).hexdigest()[:16] + '"' for path, body in feeds.items()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            body, tag = feeds[path], tags[path]
            if self.headers.get("If-None-Match") == tag:
                self.send_response(304)
                self.send_header("ETag", tag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", tag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def measure_baseline(urls: list[str]) -> dict[str, float]:
    import feedparser
    import httpx

    start = time.perf_counter()
    entries = 0
    with httpx.Client(trust_env=False) as client:
        for url in urls:
            entries += len(feedparser.parse(client.get(url).content).entries)
    return {"seconds": time.perf_counter() - start, "entries": entries, "parsed": len(urls)}


def measure_digest(urls: list[str], data: str) -> dict[str, float]:
    from datetime import datetime, timezone

    import httpx

    from digest.config import parse_config
    from digest.content import pipeline

    config = parse_config(
        {
            "site": {"name": "Bench", "base_url": "https://bench.example.com"},
            "sender": {"from_name": "Bench", "from_email": "bench@example.com"},
            "sources": [{"feed": url} for url in urls],
            "content": {"feeds_dir": data},
        }
    )
    start = time.perf_counter()
    with httpx.Client(trust_env=False) as client:
        loaded = pipeline.load(config, now=datetime.now(timezone.utc), client=client)
    return {
        "seconds": time.perf_counter() - start,
        "entries": len(loaded.posts),
        "parsed": loaded.feeds_parsed,
    }


def child(kind: str, urls: list[str], data: str) -> None:
    result = measure_baseline(urls) if kind == "baseline" else measure_digest(urls, data)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run(kind: str, urls: list[str], data: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--data", str(data), *urls],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--data")
    parser.add_argument("urls", nargs="*")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.urls, args.data)
        return
    feeds = {f"feed{n}.xml": make_feed(n, args.entries) for n in range(args.feeds)}
    server, base = serve(feeds)
    urls = [f"{base}/{path}" for path in feeds]
    size = sum(len(b) for b in feeds.values())
    print(f"{args.feeds} feeds x {args.entries} entries, {size / 1e6:.1f} MB, on {base}")
    rows: dict[str, list[dict[str, float]]] = {"baseline": [], "cold": [], "warm": []}
    try:
        for _ in range(args.runs):
            data = Path(tempfile.mkdtemp(prefix="bench-sources-"))
            try:
                rows["baseline"].append(run("baseline", urls, data))
                rows["cold"].append(run("digest", urls, data))
                rows["warm"].append(run("digest", urls, data))
            finally:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        server.shutdown()
    base_s = statistics.median(r["seconds"] for r in rows["baseline"])
    for name, label in (
        ("baseline", "baseline: GET + feedparser.parse every feed"),
        ("cold", "digest cold: fetch, parse, sanitise, cache"),
        ("warm", "digest warm: conditional GET, all 304"),
    ):
        seconds = statistics.median(r["seconds"] for r in rows[name])
        last = rows[name][-1]
        print(
            f"{label:<46} {seconds * 1000:8.0f} ms  x{seconds / base_s:5.2f} of baseline  "
            f"entries {int(last['entries']):5d}  feeds parsed {int(last['parsed']):3d}  "
            f"peak {last['peak_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
