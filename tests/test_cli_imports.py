"""Each command imports what it uses: start-up stays fast, and `--help` stays complete.

Every check runs in a fresh interpreter, because the test process has long since imported
everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # each check is a fresh interpreter

# Heavy packages that only some commands need: the email stack, the web stack, the SES SDK
# and requests. (markdown-it is not here: reading a post that is not in the cache yet needs
# it, and these runs start with an empty cache; nor httpx, which reads the site's feeds.)
HEAVY = (
    "premailer",
    "cssutils",
    "mjml",
    "lxml",
    "jinja2",
    "starlette",
    "uvicorn",
    "botocore",
    "requests",
    "watchfiles",
)

PROBE = """
import json, sys
from digest.cli import main
try:
    main(sys.argv[1:], prog_name="digest", standalone_mode=False)
except SystemExit:
    pass
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(%r)))
print("LOADED " + json.dumps(loaded), file=sys.stderr)
"""


def loaded_after(site: Path, *args: str, watched: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``watched`` a fresh process running ``digest *args`` imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE % json.dumps(watched), *args],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [x for x in done.stderr.splitlines() if x.startswith("LOADED ")]
    assert lines, done.stderr
    loaded: list[str] = json.loads(lines[-1].removeprefix("LOADED "))
    return loaded


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("select", "--week", "2026-W47"),
        ("select", "--week", "2026-W47", "--json"),
        ("status", "--week", "2026-W47"),
        ("schedule", "next"),
        ("schedule", "next", "--json"),
    ],
)
def test_light_commands_import_no_heavy_stack(sample_site: Path, args: tuple[str, ...]) -> None:
    assert loaded_after(sample_site, *args) == []


MODULES_PROBE = PROBE.replace(
    'sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(%r)))',
    "sorted(m for m in sys.modules if m.startswith(tuple(json.loads(%r))))",
)


def test_a_plain_check_loads_no_sending_or_provider_code(sample_site: Path) -> None:
    """`digest check` without --provider asks no provider: the sending and provider
    modules stay unloaded (they pulled lxml in too); with --provider they load, so the
    probe can fail."""
    watched = ["digest.delivery.providers", "digest.delivery.send", "digest.email"]
    probe = [sys.executable, "-c", MODULES_PROBE % json.dumps(watched), "--newsletter", "weekly"]

    def loaded(*args: str) -> list[str]:
        done = subprocess.run(
            [*probe, *args], cwd=sample_site, capture_output=True, text=True, timeout=120
        )
        lines = [x for x in done.stderr.splitlines() if x.startswith("LOADED ")]
        assert lines, done.stderr
        names: list[str] = json.loads(lines[-1].removeprefix("LOADED "))
        return names

    assert loaded("check") == []
    assert "digest.delivery.providers.registry" in loaded("check", "--provider")


FEEDS = ("httpx", "feedparser")


def test_select_of_markdown_folders_reads_no_feed_code(sample_site: Path) -> None:
    """The weekly newsletter reads a folder: neither the feed parser nor the HTTP client is
    imported; the links newsletter reads a feed, and both are (so the probe can fail)."""
    weekly = loaded_after(sample_site, "select", "--week", "2026-W47", "--no-cache", watched=FEEDS)
    assert weekly == []
    links = ("--newsletter", "links", "select", "--week", "2026-W47")
    assert loaded_after(sample_site, *links, watched=FEEDS) == sorted(FEEDS)


def test_build_does_import_the_email_stack(sample_site: Path) -> None:
    """The probe can fail: a command that composes does load what composing needs."""
    loaded = loaded_after(sample_site, "build", "--week", "2026-W47")
    assert {"premailer", "mjml", "jinja2"} <= set(loaded)


HELP_BOTH_WAYS = """
import inspect
from click.testing import CliRunner
from digest.cli import main
lazy = CliRunner().invoke(main, ["--help"]).output
for _, load in main.lazy.values():
    load()
assert set(main.lazy) == set(main.commands), sorted(set(main.lazy) ^ set(main.commands))
for name, (text, _) in main.lazy.items():
    command = main.commands[name]
    first = inspect.cleandoc(command.help or "").split("\\n\\n")[0]
    assert (" ".join(first.split()) if not command.hidden else "") == text, (name, first, text)
loaded = CliRunner().invoke(main, ["--help"]).output
assert lazy == loaded, (lazy, loaded)
print("ok")
"""


def test_help_lists_every_command_as_its_own_help_says() -> None:
    """The short help kept for lazy commands is the commands' own; nothing is missing."""
    done = subprocess.run(
        [sys.executable, "-c", HELP_BOTH_WAYS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_every_lazy_command_runs_its_help(sample_site: Path) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    for name in sorted(main.lazy):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: main {name}" in result.output or f"Usage: digest {name}" in result.output


EACH_LOADER = """
import sys
from digest.cli import main
name = sys.argv[1]
main.lazy[name][1]()
assert name in main.commands, f"loading {name}'s module does not register {name}"
print("ok")
"""


def test_each_lazy_command_is_registered_by_its_own_module() -> None:
    from digest.cli import main

    for name in sorted(main.lazy):
        done = subprocess.run(
            [sys.executable, "-c", EACH_LOADER, name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.stdout.strip() == "ok", done.stderr
