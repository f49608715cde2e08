from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from digest.config import Secret, load_config, parse_config
from digest.errors import ConfigError

MINIMAL = {
    "site": {"name": "Test Site", "base_url": "https://example.com/"},
    "sender": {"from_name": "Test", "from_email": "news@example.com"},
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_bundled_sample_config_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config.yaml")
    assert config.site.name == "Field Notes Weekly"
    assert config.timezone == "Europe/Berlin"
    assert [s.name for s in config.categories.sections][:2] == ["Work", "Productivity"]
    assert config.provider.name == "outbox"


def test_defaults_and_paths_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.site.base_url == "https://example.com"  # trailing slash dropped
    assert config.week_start == "monday"
    assert config.limits.per_category == 5
    assert config.path(config.content.posts_dir) == tmp_path / "content" / "posts"
    assert config.list_id == "example.com"


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    data = {
        **MINIMAL,
        "limts": {"total": 3},
        "limits": {"per_category": "five", "totl": 4},
        "timezone": "Mars/Olympus",
        "week_start": "someday",
    }
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data))
    problems = caught.value.problems
    assert "limts: unknown key; did you mean 'limits'?" in problems
    assert "limits.totl: unknown key; did you mean 'total'?" in problems
    assert any(
        p.startswith("limits.per_category: Input should be a valid integer") for p in problems
    )
    assert any(p.startswith("timezone: 'Mars/Olympus' is not a timezone") for p in problems)
    assert any(p.startswith("week_start: Input should be 'monday'") for p in problems)
    assert len(problems) == 5
    assert str(caught.value).startswith(f"{tmp_path / 'config.yaml'}: 5 problems")


def test_provider_problems_are_reported_with_the_others(tmp_path: Path) -> None:
    data = {
        **MINIMAL,
        "limits": {"per_category": "five"},
        "provider": {"name": "postmark", "tokn": "${POSTMARK_TOKEN}", "timeout": -1},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data))
    problems = caught.value.problems
    assert any(
        p.startswith("limits.per_category: Input should be a valid integer") for p in problems
    )
    assert "provider.tokn: unknown key; did you mean 'token'?" in problems
    assert "provider.token: required, but missing" in problems
    assert any(p.startswith("provider.timeout: Input should be greater than 0") for p in problems)
    assert len(problems) == 4


def test_smtp_options_are_checked_like_every_other_key() -> None:
    data = {**MINIMAL, "provider": {"name": "smtp", "port": 70000, "security": "tls"}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    problems = caught.value.problems
    assert any(
        p.startswith("provider.port: Input should be less than or equal to 65535") for p in problems
    )
    assert any(
        p.startswith("provider.security: Input should be 'starttls', 'ssl' or 'none'")
        for p in problems
    )
    assert len(problems) == 2


def test_unknown_key_inside_a_list_of_sections(tmp_path: Path) -> None:
    data = {**MINIMAL, "categories": {"sections": [{"name": "Work", "alias": ["jobs"]}]}}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data))
    assert caught.value.problems == [
        "categories.sections[0].alias: unknown key; did you mean 'aliases'?"
    ]


def test_an_unknown_key_with_no_near_miss_lists_the_keys_that_are_known() -> None:
    data = {
        **MINIMAL,
        "limits": {"zzz": 1},
        "newsletters": [{"name": "links", "sources": [{"feed": "links.xml", "colour": "red"}]}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert sorted(caught.value.problems) == [
        "limits.zzz: unknown key; known keys here: per_category, total, min_per_section, "
        "also_title, min_posts, min_posts_daily, carry_over, rank",
        "newsletters[0].sources[0].colour: unknown key; known keys here: path, feed, name, "
        "category, timeout, max_bytes, max_redirects, allow_private_addresses",
    ]


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, {"site": {"name": "x"}}))
    assert set(caught.value.problems) == {
        "site.base_url: required, but missing",
        "sender: required, but missing",
    }


def test_secrets_must_be_environment_references(tmp_path: Path) -> None:
    data = {**MINIMAL, "serve": {"secret": "hunter2"}}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data))
    (problem,) = caught.value.problems
    assert problem.startswith("serve.secret: secrets must come from the environment")
    assert "hunter2" not in str(caught.value)


def test_a_secret_reference_resolves_only_when_used() -> None:
    config = parse_config({**MINIMAL, "serve": {"secret": "${SITE_SECRET}"}})
    secret = config.serve.secret
    assert isinstance(secret, Secret)
    assert str(secret) == "${SITE_SECRET}"
    assert secret.resolve({"SITE_SECRET": "s3cret"}) == "s3cret"
    with pytest.raises(ConfigError, match="SITE_SECRET is not set"):
        secret.resolve({})


def test_category_spelled_twice_is_an_error() -> None:
    data = {
        **MINIMAL,
        "categories": {
            "sections": [{"name": "Work", "aliases": ["jobs"]}, {"name": "Jobs"}],
        },
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.problems == ["categories: 'Jobs' names both 'Work' and 'Jobs'"]


def test_include_must_name_a_section() -> None:
    data = {**MINIMAL, "categories": {"sections": [{"name": "Work"}], "include": ["Wrok"]}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.problems == ["categories: 'Wrok' in include/exclude is not a section"]


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "provider": {"name": "outbx"}})
    message = str(caught.value)
    assert "unknown provider 'outbx'; did you mean 'outbox'?" in message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("site:\n  name: [unclosed\nsender: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+: not valid YAML"):
        load_config(path)


def test_missing_config_file_says_how_to_choose_one(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"no such config file; run `digest init` .*DIGEST_CONFIG"
    ):
        load_config(tmp_path / "nope.yaml")


def test_config_env_var_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.setenv("DIGEST_CONFIG", str(path))
    assert load_config().source == path.resolve()


def test_durations_in_schedule() -> None:
    config = parse_config({**MINIMAL, "schedule": {"grace": "90m"}})
    assert config.schedule.grace.total_seconds() == 5400
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "schedule": {"grace": "soon"}})
    assert caught.value.problems[0].startswith("schedule.grace: expected a duration")


def test_every_option_has_a_description_in_the_reference() -> None:
    from digest.cli.configcmd import full_reference

    rows = full_reference()
    keys = [key for key, _, _ in rows]
    assert "limits.per_category" in keys
    assert "categories.sections[].aliases" in keys
    undocumented = [key for key, _, text in rows if not text]
    assert undocumented == []
    defaults = {key: default for key, default, _ in rows}
    assert defaults["site.name"] == "(required)"
    # every built-in provider's options are documented too
    assert defaults["provider(smtp).host"] == "localhost"
    assert defaults["provider(postmark).token"] == "(required)"
    assert {
        "provider(ses).region",
        "provider(mailgun).domain",
        "provider(outbox).directory",
    } <= set(keys)
    assert defaults["limits.per_category"] == "5"
    assert defaults["content.posts_dir"] == "content/posts"


# --------------------------------------------------------------------------- digest config


def test_digest_config_reference_prints_every_key_nested_with_its_default() -> None:
    from click.testing import CliRunner

    from digest.cli import main

    text = CliRunner().invoke(main, ["config", "reference"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    at = lines.index("site")
    assert lines[at + 1 : at + 5] == [
        "    Who the newsletter is from and where its posts live on the web.",
        "  name: (required)",
        "      The site's name, shown in the header and the subject.",
        "  base_url: (required)",
    ]
    smtp = lines.index("provider(smtp)")
    assert "  host: localhost" in lines[smtp:]
    rows = CliRunner().invoke(main, ["config", "reference", "--json"])
    keys = {row["key"]: row["default"] for row in json.loads(rows.stdout)}
    assert (keys["site.name"], keys["provider(smtp).host"]) == ("(required)", "localhost")


def test_digest_config_show_fills_defaults_and_keeps_secrets_as_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from digest.cli import main

    monkeypatch.setenv("PM_TOKEN", "pm-secret-value")
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({**MINIMAL, "provider": {"name": "postmark", "token": "${PM_TOKEN}"}})
    )
    shown = CliRunner().invoke(main, ["--config", str(path), "config", "show"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"# {path}\nsite:\n")
    data = yaml.safe_load(shown.stdout)
    assert data["provider"]["token"] == "${PM_TOKEN}"
    assert data["limits"]["per_category"] == 5  # a default, filled in
    as_json = CliRunner().invoke(main, ["--config", str(path), "config", "show", "--json"])
    assert json.loads(as_json.stdout)["provider"]["token"] == "${PM_TOKEN}"
    assert "pm-secret-value" not in shown.output + as_json.output
