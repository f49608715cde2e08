"""The preview's reload round trip: a post saved → its new title visible in the page.

    python bench/bench_preview.py [--rounds 10] [--week 2026-W47] [--chromium /usr/bin/chromium]

Runs `digest preview --port 0` on a private copy of the sample site, opens it in headless
Chromium, then repeatedly rewrites one post's title and times (on this process's clock)
from the moment the file is written to the moment the new title is in the email iframe.

Baselines measured in the same run, on the same copy of the site:
  - `digest build` as a command (what you would run by hand after each save),
  - one build_issue() call inside a warm process (the floor a rebuild cannot beat).
Peak memory is the preview server's peak resident set (VmHWM from /proc) and this process's
peak (getrusage, which includes Chromium's parent-side driver, not the browser).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM_ARGS  # noqa: E402  (the same flags as the browser tests)

POST = "the-quiet-power-of-good-defaults.md"
TITLE_LINE = re.compile(r"^title: .*$", re.MULTILINE)
FRAME_TEXT = """(wanted) => {
  const doc = document.getElementById('email').contentDocument;
  return !!(doc && doc.body && doc.body.innerText.includes(wanted));
}"""


def copy_site(into: Path) -> Path:
    site = into / "site"
    site.mkdir()
    shutil.copytree(ROOT / "content", site / "content")
    shutil.copy(ROOT / "config.yaml", site / "config.yaml")
    return site


def time_cli_build(site: Path, week: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "digest",
                "--config",
                str(site / "config.yaml"),
                "build",
                "--week",
                week,
            ],
            cwd=site,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - start)
    return times


def time_inprocess_build(site: Path, week: str, runs: int) -> list[float]:
    from digest.config import load_config
    from digest.email.build import build_issue

    times = []
    now = datetime.now(timezone.utc)
    build_issue(load_config(site / "config.yaml"), now=now, week=week, write=False)  # warm up
    for _ in range(runs):
        start = time.perf_counter()
        build_issue(load_config(site / "config.yaml"), now=now, week=week, write=False)
        times.append(time.perf_counter() - start)
    return times


def start_preview(site: Path, week: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(site / "config.yaml"),
            "preview",
            "--week",
            week,
            "--port",
            "0",
        ],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.match(r"Previewing \S+ at (http://\S+)", line.strip())
        if found:
            # Keep draining its output so the pipe never fills.
            threading.Thread(
                target=lambda: [None for _ in process.stdout or ()], daemon=True
            ).start()
            return process, found.group(1)
    raise SystemExit(f"digest preview exited with {process.wait()} before printing its address")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--week", default="2026-W47")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        site = copy_site(Path(tmp))
        cli = time_cli_build(site, args.week, 3)
        warm = time_inprocess_build(site, args.week, 5)
        process, url = start_preview(site, args.week)
        reloads: list[float] = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=args.chromium, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(30_000)
                page.goto(url)
                page.wait_for_function("document.body.dataset.version")
                post = site / "content" / "posts" / POST
                original = post.read_text(encoding="utf-8")
                for number in range(args.rounds):
                    title = f"Defaults, Round {number}"
                    changed = TITLE_LINE.sub(f"title: {title}", original, count=1)
                    start = time.perf_counter()
                    post.write_text(changed, encoding="utf-8")
                    page.wait_for_function(FRAME_TEXT, arg=title, polling="raf")
                    reloads.append(time.perf_counter() - start)
                browser.close()
            server_peak = peak_rss_mb(process.pid)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)

    cli_median = statistics.median(cli)
    warm_median = statistics.median(warm)
    median = statistics.median(reloads)
    p95 = percentile(reloads, 0.95)
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"site: sample site, {args.week}; {args.rounds} reload rounds in headless Chromium")
    print(f"baseline  digest build (command)          median {cli_median * 1000:7.1f} ms")
    print(f"baseline  build_issue() in a warm process median {warm_median * 1000:7.1f} ms")
    print(
        f"preview   save -> new title in the page    median {median * 1000:7.1f} ms   "
        f"p95 {p95 * 1000:6.1f} ms   max {max(reloads) * 1000:6.1f} ms"
    )
    print(f"ratio     reload / digest build command     {median / cli_median:6.2f}x")
    print(f"ratio     reload / warm build_issue()       {median / warm_median:6.2f}x")
    print(f"target    under one second: {'met' if p95 < 1.0 else 'NOT met'} (p95)")
    print(f"peak memory: preview server {server_peak:.1f} MB RSS; this script {own_peak:.1f} MB")


if __name__ == "__main__":
    main()
