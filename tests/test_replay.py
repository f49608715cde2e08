"""`digest select` replays its answer while nothing it read has changed, and only then."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digest import config as config_module
from digest.cli import replay
from digest.content import memory

PROBE = """
import sys
from digest.cli import main
code = 1
try:
    code = main(sys.argv[1:], prog_name="digest", standalone_mode=False)
finally:
    print("FULL" if "pydantic" in sys.modules else "REPLAYED", file=sys.stderr)
sys.exit(code)
"""


def digest(site: Path, *args: str) -> tuple[str, str, str]:
    """(stdout, stderr before the probe's line, FULL or REPLAYED) of one process."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *err, how = done.stderr.splitlines()
    return done.stdout, "\n".join(err), how


def select(site: Path, *args: str) -> tuple[str, str]:
    out, _, how = digest(site, "select", *args)
    return out, how


def answers() -> dict[str, dict[str, object]]:
    (store,) = (Path.home() / ".cache" / "digest" / "answers").iterdir()
    stored: dict[str, dict[str, object]] = json.loads(store.read_text())
    return stored


def test_the_lookups_are_the_same_as_the_modules_that_own_them() -> None:
    assert replay.CONFIG_ENV == config_module.CONFIG_ENV
    assert replay.DEFAULT_CONFIG_NAME == config_module.DEFAULT_CONFIG_NAME
    assert replay.MANIFEST == memory.MANIFEST


def test_a_warm_select_is_replayed_without_the_schema_until_a_post_changes(
    sample_site: Path,
) -> None:
    first, how = select(sample_site, "--week", "2026-W47")
    assert how == "FULL" and "2026-W47" in first
    again, how = select(sample_site, "--week", "2026-W47")
    assert (again, how) == (first, "REPLAYED")

    post = sample_site / "content" / "posts" / "measuring-what-patients-notice.md"
    post.write_text(post.read_text().replace("Measuring What", "Changed: What", 1))
    changed, how = select(sample_site, "--week", "2026-W47")
    assert how == "FULL" and "Changed: What" in changed and changed != first
    assert select(sample_site, "--week", "2026-W47") == (changed, "REPLAYED")

    new = sample_site / "content" / "posts" / "sub" / "a-new-one.md"
    new.parent.mkdir()
    new.write_text("---\ntitle: A new one\ndate: 2026-11-18\ncategory: Work\n---\nBody\n")
    added, how = select(sample_site, "--week", "2026-W47", "--explain")
    assert how == "FULL" and "A new one" in added


def test_other_arguments_newsletter_config_or_flags_run_in_full(sample_site: Path) -> None:
    weekly, _ = select(sample_site, "--week", "2026-W47")
    assert select(sample_site, "--week", "2026-W47", "--json")[1] == "FULL"
    assert select(sample_site, "--week", "2026-W46")[1] == "FULL"
    assert select(sample_site, "--week", "2026-W47", "--no-cache")[1] == "FULL"
    assert digest(sample_site, "-v", "select", "--week", "2026-W47")[2] == "FULL"
    # The links newsletter reads a feed: its answer is never stored, and never the weekly's.
    links, _, how = digest(sample_site, "--newsletter", "links", "select", "--week", "2026-W47")
    assert how == "FULL" and links != weekly
    again, _, how = digest(sample_site, "--newsletter", "links", "select", "--week", "2026-W47")
    assert (again, how) == (links, "FULL")
    assert select(sample_site, "--week", "2026-W47") == (weekly, "REPLAYED")

    config = sample_site / "config.yaml"
    config.write_text(config.read_text().replace("total: 20", "total: 2"))
    out, how = select(sample_site, "--week", "2026-W47")
    assert how == "FULL" and out != weekly
    assert select(sample_site, "--week", "2026-W47") == (out, "REPLAYED")


def test_a_new_earlier_issue_changes_the_answer(sample_site: Path) -> None:
    """Cross-issue memory: an issue built since the last answer can drop a story from it."""
    first, _ = select(sample_site, "--week", "2026-W48", "--explain")
    assert select(sample_site, "--week", "2026-W48", "--explain") == (first, "REPLAYED")
    built = subprocess.run(
        [sys.executable, "-m", "digest", "build", "--week", "2026-W47"],
        cwd=sample_site,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert list((sample_site / "out").glob(f"*/{memory.MANIFEST}"))
    _, how = select(sample_site, "--week", "2026-W48", "--explain")
    assert how == "FULL"


def test_warnings_are_replayed_and_errors_never_stored(sample_site: Path) -> None:
    broken = sample_site / "content" / "posts" / "broken.md"
    broken.write_text("---\ntitle: [unclosed\n---\nBody\n")
    out, err, how = digest(sample_site, "select", "--week", "2026-W47")
    assert how == "FULL" and "broken.md" in err
    assert digest(sample_site, "select", "--week", "2026-W47") == (out, err, "REPLAYED")

    (sample_site / "config.yaml").write_text("site: {name: x}\nsendr: {}\n")
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, "select", "--week", "2026-W47"],
            cwd=sample_site,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 3 and "sendr" in done.stderr
        assert done.stderr.splitlines()[-1] == "FULL"


def test_an_answer_expires_when_a_future_post_becomes_current(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sample_site)
    request = replay.Request.of(None, ("select", "x"))
    assert request is not None
    reads = replay.Reads((sample_site / "content" / "posts",), sample_site / "out")
    replay.remember(
        request, reads=reads.fingerprint(), stdout="the answer\n", stderr="", valid_until=1000.0
    )
    assert replay.replay(request, now=999.0)
    assert not replay.replay(request, now=1000.0)
    assert next(iter(answers().values()))["valid_until"] == 1000.0


def test_the_default_week_is_kept_only_to_the_next_quarter_hour(sample_site: Path) -> None:
    select(sample_site)
    (answer,) = answers().values()
    until = answer["valid_until"]
    assert isinstance(until, float) and until % 900 == 0


def test_an_unreadable_or_foreign_store_means_a_full_run(sample_site: Path) -> None:
    first, _ = select(sample_site, "--week", "2026-W47")
    (store,) = (Path.home() / ".cache" / "digest" / "answers").iterdir()
    for junk in ("not json", "[]", json.dumps({k: {"reads": {}} for k in answers()})):
        store.write_text(junk)
        assert select(sample_site, "--week", "2026-W47") == (first, "FULL")
    forged = {k: {**v, "reads": {"elsewhere:/": "x"}} for k, v in answers().items()}
    store.write_text(json.dumps(forged))
    assert select(sample_site, "--week", "2026-W47") == (first, "FULL")


# --------------------------------------------------------------------------- in-process


def test_select_in_this_process_is_remembered_then_replayed(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    monkeypatch.chdir(sample_site)
    first = CliRunner().invoke(main, ["select", "--week", "2026-W47"])
    assert first.exit_code == 0, first.output
    (answer,) = answers().values()
    assert answer["stdout"] == first.stdout
    again = CliRunner().invoke(main, ["select", "--week", "2026-W47"])
    assert (again.exit_code, again.stdout) == (0, first.stdout)
    post = next((sample_site / "content" / "posts").rglob("*.md"))
    post.write_text(post.read_text() + "\nOne more line.\n")  # a post changed: in full again
    third = CliRunner().invoke(main, ["select", "--week", "2026-W47"])
    assert third.exit_code == 0
    assert len(answers()) == 1  # the same question: its answer replaced


def test_fingerprints_see_every_kind_of_entry_and_missing_folders(tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    (posts / "2026").mkdir(parents=True)
    (posts / "2026" / "a.md").write_text("a")
    (tmp_path / "shared.md").write_text("shared")
    (posts / "linked.md").symlink_to(tmp_path / "shared.md")
    (posts / "dangling.md").symlink_to(tmp_path / "gone.md")
    before = replay.tree_fingerprint(posts)
    assert replay.tree_fingerprint(posts) == before  # nothing changed
    (tmp_path / "shared.md").write_text("shared, and changed")  # through the symlink
    assert replay.tree_fingerprint(posts) != before
    missing = replay.tree_fingerprint(tmp_path / "nowhere")
    assert missing == replay.tree_fingerprint(tmp_path / "nowhere") != before
    out = tmp_path / "out"
    assert replay.manifests_fingerprint(out).startswith("!")  # no output folder yet
    (out / "2026-W46").mkdir(parents=True)  # a folder without a manifest does not count
    empty = replay.manifests_fingerprint(out)
    (out / "2026-W46" / "manifest.json").write_text("{}")
    assert replay.manifests_fingerprint(out) != empty
    reads = replay.Reads((posts,), out)
    assert replay.Reads.still(reads.fingerprint())
    assert not replay.Reads.still({"elsewhere:/": "x"})


def test_a_stored_answer_that_is_not_whole_is_never_replayed(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(sample_site)
    request = replay.Request.of(None, ("select", "x"))
    assert request is not None
    reads = replay.Reads((sample_site / "content" / "posts",), sample_site / "out").fingerprint()
    replay.remember(request, reads=reads, stdout="out\n", stderr="warned\n", valid_until=None)
    assert replay.replay(request)
    assert capsys.readouterr() == ("out\n", "warned\n")
    (store,) = (Path.home() / ".cache" / "digest" / "answers").iterdir()
    for broken in ({"stdout": None}, {"reads": {}}, {"stderr": 3}):
        stored = json.loads(store.read_text())
        stored[request.key].update(broken)
        store.write_text(json.dumps(stored))
        assert not replay.replay(request), broken
        replay.remember(request, reads=reads, stdout="out\n", stderr="", valid_until=None)
    assert capsys.readouterr() == ("", "")


def test_only_the_latest_answers_are_kept_and_an_unwritable_cache_is_skipped(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sample_site)
    reads = replay.Reads((sample_site / "content" / "posts",), sample_site / "out").fingerprint()
    requests = [replay.Request.of(None, ("select", str(n))) for n in range(replay.KEEP + 1)]
    for request in requests:
        assert request is not None
        replay.remember(request, reads=reads, stdout="", stderr="", valid_until=None)
    kept = answers()
    assert len(kept) == replay.KEEP
    assert requests[0] is not None and requests[0].key not in kept  # the oldest went
    assert replay.Request.of(str(sample_site / "missing.yaml"), ("select",)) is None
    (sample_site / "cache-file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(sample_site / "cache-file"))
    assert requests[1] is not None
    replay.remember(requests[1], reads=reads, stdout="x", stderr="", valid_until=None)
    assert not replay.replay(requests[1])  # nothing was stored, and nothing broke
