"""The wheel must carry every package and the built-in templates."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from digest.resources import builtin_templates

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the check needs to run only once

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "digest").rglob("__init__.py")
    }
    assert on_disk <= listed
    assert config["tool"]["setuptools"]["package-dir"]["digest._templates"] == "templates"
    # each template subfolder is listed too, with its files as package data
    folders = {
        ".".join(("digest._templates", *sub.relative_to(ROOT / "templates").parts))
        for sub in (ROOT / "templates").rglob("*")
        if sub.is_dir()
    }
    data = config["tool"]["setuptools"]["package-data"]
    assert folders <= listed
    assert all(data.get(name) == ["*"] for name in folders | {"digest._templates"})


def test_the_builtin_templates_are_found() -> None:
    folder = builtin_templates()
    for name in ("email.mjml.j2", "email.txt.j2", "preview/page.html.j2", "serve/base.html.j2"):
        assert (folder / name).is_file(), name


def test_python_dash_m_digest_is_the_digest_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from digest import __version__

    monkeypatch.setattr(sys, "argv", ["python -m digest", "--version"])
    with pytest.raises(SystemExit) as ended:
        runpy.run_module("digest", run_name="__main__")
    assert ended.value.code == 0
    assert capsys.readouterr().out == f"digest, version {__version__}\n"


def test_an_installed_wheel_reads_the_templates_it_carries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest import resources

    package = tmp_path / "site-packages" / "digest"
    monkeypatch.setattr(resources, "_PACKAGE", package)
    assert resources.builtin_templates() == tmp_path / "site-packages" / "templates"  # a checkout
    (package / "_templates").mkdir(parents=True)
    assert resources.builtin_templates() == package / "_templates"  # the wheel's own copy


def test_the_distribution_has_its_own_name_and_installs_the_digest_command() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = config["project"]
    assert project["name"] == "digest-newsletter"  # "digest" is taken on the package index
    assert project["scripts"] == {"digest": "digest.cli:main"}
    extras = project["optional-dependencies"]
    assert extras["test"][:2] == ["digest-newsletter[ses]", "digest-newsletter[postgresql]"]
    assert extras["dev"][0] == "digest-newsletter[test]"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "$ pip install digest-newsletter\n" in readme
    assert "pip install 'digest[" not in readme and "pip install ." not in readme


def test_the_fast_lane_installs_only_the_package_and_its_test_extras() -> None:
    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    commands = [line.strip() for line in script.splitlines() if not line.lstrip().startswith("#")]
    fast = commands[: next(i for i, c in enumerate(commands) if "pytest --fast" in c) + 1]
    installs = [c for c in fast if "install" in c or "npm" in c or "apt" in c]
    assert installs == [
        ".venv/bin/python -m pip install --quiet --upgrade pip",
        '.venv/bin/python -m pip install --quiet -e ".[test]"',
    ]
    full = "\n".join(commands)
    assert 'apt-get "${lock[@]}"' in full and "DPkg::Lock::Timeout=$APT_WAIT" in full
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").endswith("exec bash scripts/test\n")
