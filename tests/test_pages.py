"""The service's pages (digest/serve/pages.py): a user's templates/serve/ overrides the
built-in files, the stylesheet included, and a broken template names its file and line
without taking the service down."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from digest.config import Config, load_config
from digest.errors import TemplateError
from digest.serve.app import create_app
from digest.serve.pages import BUILTIN_DIR, Pages

with warnings.catch_warnings():  # Starlette suggests another HTTP client for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def with_own_templates(site: Path, **files: str) -> Config:
    """The site with email.templates_dir: my-templates/, holding ``files`` under serve/."""
    folder = site / "my-templates" / "serve"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data.setdefault("email", {})["templates_dir"] = "my-templates"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_the_stylesheet_is_the_users_own_when_there_is_one(sample_site: Path) -> None:
    builtin = (BUILTIN_DIR / "serve.css").read_bytes()
    assert builtin and Pages(load_config(sample_site / "config.yaml")).stylesheet() == builtin
    config = with_own_templates(sample_site, serve__css="body { color: rebeccapurple }\n")
    with TestClient(create_app(config), base_url="http://127.0.0.1:8025") as client:
        answer = client.get("/assets/serve.css")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/css; charset=utf-8"
    assert answer.content == b"body { color: rebeccapurple }\n"


def test_without_a_stylesheet_of_their_own_the_builtin_one_is_served(sample_site: Path) -> None:
    config = with_own_templates(sample_site, confirm__html__j2="{{ site_name }}\n")
    assert Pages(config).stylesheet() == (BUILTIN_DIR / "serve.css").read_bytes()
    assert Pages(config).render("confirm.html.j2") == "Field Notes Weekly\n"


def test_a_broken_template_names_its_file_and_line(sample_site: Path) -> None:
    config = with_own_templates(sample_site, subscribe__html__j2="<p>\n{% if %}\n")
    with pytest.raises(TemplateError) as caught:
        Pages(config).render("subscribe.html.j2")
    assert (caught.value.path, caught.value.line) == ("templates/serve/subscribe.html.j2", 2)
    assert str(caught.value).startswith("templates/serve/subscribe.html.j2:2: ")


def test_a_broken_error_page_still_answers_500_in_plain_words(sample_site: Path) -> None:
    config = with_own_templates(
        sample_site,
        subscribe__html__j2="{{ no_such_value }}\n",  # StrictUndefined: fails to render
        error__html__j2="{% if %}\n",
    )
    app = create_app(config)
    with TestClient(app, base_url="http://127.0.0.1:8025", raise_server_exceptions=False) as c:
        answer = c.get("/subscribe")
    assert answer.status_code == 500
    assert answer.text == "Something went wrong."
