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
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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

            with tarfile.open(ROOT.parent / "shared" / "corpus" / "aivibe-posts.tar.gz") as tar:
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


if __name__ == "__main__":
    main()
