"""Every config example in the README and docs/ validates against the schema."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from digest.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _examples() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"```yaml\n(.*?)```", text, re.S):
            block = match.group(1)
            if block.lstrip().startswith("---"):
                continue  # a post's front matter, not config
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", block))
    return found


EXAMPLES = _examples()


def test_the_pages_have_config_examples() -> None:
    assert len(EXAMPLES) >= 8, [where for where, _ in EXAMPLES]


@pytest.mark.parametrize(("where", "block"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_each_config_example_is_valid(where: str, block: str) -> None:
    base = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    fragment = yaml.safe_load(block)
    assert isinstance(fragment, dict), f"{where}: not a mapping"
    parse_config(_merge(base, fragment), ROOT / where.split(":")[0])


def test_the_error_tree_names_every_error_and_its_exit_code() -> None:
    """digest/errors.py draws the DigestError tree; every subclass in digest/ is in it, under
    its parent, with the exit code the class says."""
    import importlib
    import inspect
    import pkgutil

    import digest
    from digest import errors

    for info in pkgutil.walk_packages(digest.__path__, "digest."):
        if not info.name.startswith(("digest.cli", "digest.__main__")):
            importlib.import_module(info.name)

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    drawn = {}
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"\s*([│├└─ ]*)(\w+)\s+(exit \d)?", line)
        if match and match.group(2)[0].isupper() and "─" in match.group(1):
            drawn[match.group(2)] = (len(match.group(1)), match.group(3))
    for cls in subclasses(errors.DigestError):
        if not cls.__module__.startswith("digest."):
            continue
        assert cls.__name__ in drawn, f"{cls.__name__} ({inspect.getmodule(cls)}) is not drawn"
        depth, code = drawn[cls.__name__]
        parents = [c for c in cls.__mro__[1:] if issubclass(c, errors.DigestError)]
        assert depth == 4 * len(parents), cls.__name__
        if code is not None:
            assert code == f"exit {cls.exit_code}", cls.__name__
