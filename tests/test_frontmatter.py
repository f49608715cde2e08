"""Front matter read with limits (digest/content/frontmatter.py)."""

from __future__ import annotations

import pytest
import yaml

from digest.content.frontmatter import FrontMatterTooLarge, YamlLimits, load_bounded


def laughs(levels: int, width: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_counts_stop_the_reading_at_the_first_limit_passed() -> None:
    with pytest.raises(FrontMatterTooLarge, match="more than 10 values"):
        load_bounded("tags: [" + ", ".join(["t"] * 11) + "]\n", YamlLimits(nodes=10))
    with pytest.raises(FrontMatterTooLarge, match="more than 2 aliases"):
        load_bounded("a: &a x\nb: [*a, *a, *a]\n", YamlLimits(aliases=2))
    with pytest.raises(FrontMatterTooLarge, match="expands to more than 1,000 values"):
        load_bounded(laughs(3), YamlLimits(expanded=1000))


def test_the_expanded_size_counts_every_use_of_an_alias() -> None:
    # expanded, laughs(2) holds 925 values and laughs(3) 8,307 (a3 alone is 7,381)
    loaded = load_bounded(laughs(2), YamlLimits(expanded=10_000))
    assert loaded["a2"][0] is loaded["a1"]  # shared, never copied
    with pytest.raises(FrontMatterTooLarge):
        load_bounded(laughs(3), YamlLimits(expanded=5_000))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: *nowhere\n", "found undefined alias 'nowhere'"),
        ("a: &x 1\nb: &x 2\n", "found duplicate anchor 'x'"),
        ("a: &l [*l]\n", "found a recursive alias"),
        ("? [a]\n: b\n", "found unhashable key"),
        ("a: 1\n---\nb: 2\n", "but found another document"),
    ],
)
def test_yaml_that_cannot_be_read_is_a_yaml_error(text: str, problem: str) -> None:
    with pytest.raises(yaml.YAMLError) as caught:
        load_bounded(text, YamlLimits())
    assert problem in str(caught.value)


def test_scalars_stay_strings_as_with_the_base_loader() -> None:
    text = "date: 2026-11-18\ndraft: yes\nn: 12\ntags: [a, b]\nx: {k: ~}\n"
    assert load_bounded(text, YamlLimits()) == yaml.load(text, Loader=yaml.BaseLoader)
