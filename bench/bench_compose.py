"""Compose time and HTML size for 1, 10, 50 and 200-post selections of the real corpus.

    python bench/bench_compose.py [--posts /tmp/corpus/posts] [--runs 5]

Posts come from the corpus's busiest weeks (2026-W02, then 2026-W07 to reach 200). Each
size is measured twice in the same run:

- ``compose``: the real path, jinja2 → MJML → premailer plus the text part, with the 100 KB
  budget (so the 50 and 200-post selections include the trimming renders);
- ``baseline``: the same posts rendered by a plain jinja2 HTML loop, one card per post, no
  MJML, no premailer, no budget: what a hand-written script would do.

It prints the median of ``--runs`` timings of each, their ratio, both HTML sizes, and the
peak Python memory of one compose (tracemalloc).

Then the busiest week whole (2026-W02, 198 posts) beside the reference MJML compiler, npm
``mjml`` (installed by this script into bench/node with ``npm ci``, from the committed
package-lock.json), compiling the very MJML digest's template produced for it:

- npm ``mjml``: in one Node process (median of ``--runs`` compiles) and as the ``mjml``
  command (a whole process, as a build script would call it);
- mjml-python (digest's MJML compiler) on the same MJML, and with premailer after it;
- ``compose()`` of the week: everything, trimming to the 100 KB budget included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.audience.links import post_url  # noqa: E402
from digest.config import Config, load_config  # noqa: E402
from digest.content import pipeline  # noqa: E402
from digest.content.posts import Post  # noqa: E402
from digest.content.select import Section, Selection  # noqa: E402
from digest.email.compose import compose  # noqa: E402

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
SIZES = (1, 10, 50, 200)

BASELINE = jinja2.Environment(autoescape=True).from_string(
    """<!DOCTYPE html><html lang="en"><body><h1>{{ site }}</h1>
{% for post in posts %}<div><img src="{{ post.cover_image }}" width="552" alt="{{ post.title }}">
<h3><a href="{{ url(post) }}">{{ post.title }}</a></h3><p>{{ post.excerpt }}</p>
<p>{{ post.author }} · {{ post.date.date() }}</p></div>
{% endfor %}</body></html>"""
)


def corpus_posts(config: Config, count: int) -> tuple[Selection, list[Post]]:
    first = pipeline.load_and_select(config, NOW, week="2026-W02").selection
    second = pipeline.load_and_select(config, NOW, week="2026-W07").selection
    posts = (first.posts + second.posts)[:count]
    return first, posts


def selection_of(template: Selection, posts: list[Post]) -> Selection:
    sections: dict[str, list[Post]] = {}
    for post in posts:
        sections.setdefault(post.category or "More", []).append(post)
    return replace(
        template,
        sections=tuple(Section(name, name, tuple(items)) for name, items in sections.items()),
    )


def timed(func: object, runs: int) -> float:
    assert callable(func)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


NODE = ROOT / "bench" / "node"
NODE_TIMER = """
const mjml2html = require("mjml");
const fs = require("fs");
const source = fs.readFileSync(process.argv[2], "utf8");
const runs = Number(process.argv[3]);
mjml2html(source, { validationLevel: "skip" });  // warm up (JIT, lazy requires)
const times = [];
let size = 0;
for (let i = 0; i < runs; i++) {
  const start = process.hrtime.bigint();
  const out = mjml2html(source, { validationLevel: "skip" });
  times.push(Number(process.hrtime.bigint() - start) / 1e6);
  size = Buffer.byteLength(out.html);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ ms: times[Math.floor(runs / 2)], size }));
"""


def npm_mjml_ready() -> bool:
    """Install npm mjml into bench/node (once) from the committed lock file."""
    if (NODE / "node_modules" / "mjml").is_dir():
        return True
    if shutil.which("npm") is None:
        print("npm is not installed: skipping the comparison with npm mjml")
        return False
    done = subprocess.run(
        ["npm", "ci", "--prefix", str(NODE), "--no-audit", "--no-fund", "--loglevel=error"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        print(f"npm ci failed, skipping npm mjml:\n{done.stderr}")
    return done.returncode == 0


def against_npm_mjml(config: Config, selection: Selection, runs: int) -> None:
    """The busiest week's MJML through npm mjml, mjml-python and premailer; compose() whole."""
    from mjml import mjml2html

    from digest.email.compose import IssueRenderer, _Plan
    from digest.email.templating import (
        HTML_TEMPLATE,
        _css,
        _mjml_to_html,
        environment,
        render_template,
    )

    renderer = IssueRenderer(config, selection, intro=None, web=False)
    views = renderer.views(selection.sections, _Plan())
    context = renderer.context(views, _Plan(), subject="Busiest week", preheader="All of it")
    mjml = render_template(renderer.env, HTML_TEMPLATE, context)
    css = _css(environment(config))
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "week.mjml"
        source.write_text(mjml)
        if npm_mjml_ready():
            timer = Path(folder) / "timer.js"
            timer.write_text(NODE_TIMER)
            env_path = {"NODE_PATH": str(NODE / "node_modules")}
            done = subprocess.run(
                ["node", str(timer), str(source), str(runs)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **env_path},
            )
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(("npm mjml, in one Node process", measured["ms"] / 1000, measured["size"]))
            cli = NODE / "node_modules" / ".bin" / "mjml"
            out = Path(folder) / "week.html"

            def command() -> None:
                subprocess.run(
                    [str(cli), str(source), "-o", str(out), "--config.validationLevel=skip"],
                    check=True,
                    capture_output=True,
                )

            rows.append(("npm mjml, the mjml command", timed(command, runs), out.stat().st_size))
    python_html = mjml2html(mjml)
    rows.append(("mjml-python (digest's compiler)", timed(lambda: mjml2html(mjml), runs),
                 len(str(python_html).encode())))  # fmt: skip
    inlined = _mjml_to_html(mjml, css)
    rows.append(("mjml-python + premailer", timed(lambda: _mjml_to_html(mjml, css), runs),
                 len(inlined.encode())))  # fmt: skip
    composed = compose(config, selection, now=NOW)
    rows.append(("digest compose() (trims to budget)",
                 timed(lambda: compose(config, selection, now=NOW), runs),
                 composed.html_size))  # fmt: skip
    base = rows[0][1]
    print(
        f"\n{selection.issue_id}: {selection.count} posts in {len(selection.sections)} sections;"
        f" MJML source {len(mjml.encode()) / 1024:.0f} KB; median of {runs} runs;"
        f" ratio = time / {rows[0][0]}"
    )
    print(f"{'':38} {'ms':>9} {'ratio':>7} {'HTML KB':>8}")
    for label, seconds, size in rows:
        print(f"{label:38} {seconds * 1000:9.1f} {seconds / base:7.2f} {size / 1024:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", default="/tmp/corpus/posts", help="the corpus's posts folder")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder)
        posts_dir = Path(args.posts)
        if not posts_dir.is_dir():  # fall back to the corpus tarball the tests use
            import tarfile

            tarball = os.environ.get("DIGEST_CORPUS_TARBALL") or (
                ROOT.parent / "shared" / "corpus" / "aivibe-posts.tar.gz"
            )
            with tarfile.open(tarball) as tar:
                tar.extractall(site / "corpus", filter="data")
            posts_dir = site / "corpus" / "posts"
        (site / "posts").symlink_to(posts_dir.resolve())
        shutil.copy(ROOT / "tests" / "data" / "corpus-config.yaml", site / "config.yaml")
        config = load_config(site / "config.yaml")
        template, posts = corpus_posts(config, max(SIZES))
        print(f"{'posts':>5} {'compose ms':>11} {'baseline ms':>12} {'ratio':>6} "
              f"{'html KB':>8} {'base KB':>8} {'shown':>6} {'peak MB':>8}")  # fmt: skip
        for size in SIZES:
            selection = selection_of(template, posts[:size])
            composed = compose(config, selection, now=NOW)  # warm the template cache
            compose_s = timed(lambda s=selection: compose(config, s, now=NOW), args.runs)

            def baseline(s: Selection = selection) -> str:
                return BASELINE.render(
                    site=config.site.name, posts=s.posts, url=lambda p: post_url(config, p)
                )

            base_html = baseline()
            base_s = timed(baseline, args.runs)
            tracemalloc.start()
            compose(config, selection, now=NOW)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            print(
                f"{size:>5} {compose_s * 1000:>11.1f} {base_s * 1000:>12.2f} "
                f"{compose_s / base_s:>6.0f} {composed.html_size / 1024:>8.1f} "
                f"{len(base_html.encode()) / 1024:>8.1f} {composed.post_count:>6} "
                f"{peak / 1e6:>8.1f}"
            )
        print("shown = posts in the email after trimming to the 100 KB budget")
        against_npm_mjml(config, template, args.runs)


if __name__ == "__main__":
    main()
