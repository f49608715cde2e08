"""The preview server, state and watcher, driven with a stand-in builder (no browser)."""

from __future__ import annotations

import html
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from digest.errors import ConfigError, DigestError, NothingToSend, SendError, TemplateError
from digest.preview import (
    Check,
    PreviewState,
    Problem,
    Render,
    WatchSet,
    WeekChoice,
    run_preview,
)
from digest.preview.server import PreviewOptions, create_app
from digest.preview.site import BUILTIN_TEMPLATES, SitePreview, send_test_for
from digest.preview.state import BuildEvent
from digest.preview.watch import Watcher
from tests.conftest import run_digest

with warnings.catch_warnings():  # Starlette suggests another HTTP client for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

WAIT = 20.0  # seconds; generous, never asserted on


class StandInBuilder:
    """Builds a tiny email from ``title.txt`` and ``template.html`` in a folder.

    A template containing ``{%`` fails the way a real template error does: with its file
    and line.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[str] = []

    def __call__(self, issue_id: str) -> Render:
        self.calls.append(issue_id)
        template_path = self.root / "template.html"
        template = template_path.read_text(encoding="utf-8")
        if "{%" in template:
            line = template[: template.index("{%")].count("\n") + 1
            raise TemplateError("unexpected '%}'", path=str(template_path), line=line)
        if issue_id == "2026-W01":
            raise NothingToSend("2026-W01 has no posts")
        title = (self.root / "title.txt").read_text(encoding="utf-8").strip()
        return Render(
            issue_id=issue_id,
            subject=f"Field Notes: {title}",
            preheader=f"This week: {title}",
            from_address="Field Notes Weekly <weekly@fieldnotes.example.com>",
            html=template.replace("TITLE", html.escape(title)),
            text=f"{title}\n\nUnsubscribe: [[digest:unsubscribe_url]]\n",
            headers={"From": "Field Notes Weekly <weekly@fieldnotes.example.com>"},
            checks=(Check("size", "pass", "1 KB of 100 KB"), Check("alt-text", "warn", "1 image")),
            sections=("Work",),
            post_count=1,
        )


TEMPLATE = (
    '<!doctype html>\n<html><body>\n<h1 class="title">TITLE</h1>\n<p>café ✓</p>\n</body></html>\n'
)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "standin"
    root.mkdir()
    (root / "template.html").write_text(TEMPLATE, encoding="utf-8")
    (root / "title.txt").write_text("The Meeting Budget\n", encoding="utf-8")
    return root


@pytest.fixture
def client(site: Path) -> Iterator[tuple[TestClient, PreviewState, StandInBuilder]]:
    builder = StandInBuilder(site)
    state = PreviewState(builder)
    options = PreviewOptions(
        default_issue="2026-W47",
        weeks=lambda: [
            WeekChoice("2026-W47", "2026-W47 · 1 post"),
            WeekChoice("2026-W46", "x", True),
        ],
        archive=lambda issue: b"<p>archived</p>" if issue == "2026-W46" else None,
        allowed_hosts=frozenset({"testserver"}),
    )
    with TestClient(create_app(state, options)) as test_client:
        yield test_client, state, builder


# -- state ------------------------------------------------------------------------------------


def test_a_failed_build_keeps_the_last_good_render(site: Path) -> None:
    state = PreviewState(StandInBuilder(site))
    good = state.build("2026-W47")
    assert good.problem is None and good.render is not None
    assert good.render.subject == "Field Notes: The Meeting Budget"

    (site / "template.html").write_text("<html>\n<body>\n{% if %}\n</body>\n", encoding="utf-8")
    bad = state.build("2026-W47")
    assert bad.render is good.render  # the last good email stays
    assert bad.problem is not None
    assert bad.problem.kind == "template"
    assert bad.problem.path == str(site / "template.html")
    assert bad.problem.line == 3
    assert (3, "{% if %}") in bad.problem.snippet
    assert bad.version == good.version + 1
    assert bad.render_version == good.render_version == good.version  # the frame keeps it

    (site / "template.html").write_text(TEMPLATE, encoding="utf-8")
    fixed = state.build("2026-W47")
    assert fixed.problem is None
    assert fixed.render_version == fixed.version == bad.version + 1
    assert fixed.render is not None and fixed.render is not good.render


def test_problems_say_what_kind_and_where(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("site:\n  name: x\n  base_url: [\n", encoding="utf-8")
    yaml_error = Problem.from_exception(ConfigError(f"{config}:3: not valid YAML: oops"))
    assert (yaml_error.kind, yaml_error.path, yaml_error.line) == ("config", str(config), 3)
    assert yaml_error.snippet == ((1, "site:"), (2, "  name: x"), (3, "  base_url: ["))

    schema = Problem.from_exception(
        ConfigError("config.yaml: 2 problems", ["limts: unknown key", "site.name: required"])
    )
    assert schema.message == "config.yaml: 2 problems"
    assert schema.details == ("limts: unknown key", "site.name: required")

    assert Problem.from_exception(NothingToSend("2026-W01 has no posts")).kind == "empty"
    assert Problem.from_exception(DigestError("no")).kind == "error"
    crash = Problem.from_exception(KeyError("title"))
    assert (crash.kind, crash.message) == ("unexpected", "KeyError: 'title'")


def test_a_crashing_builder_never_takes_the_preview_down() -> None:
    def builder(issue_id: str) -> Render:
        raise RuntimeError("boom")

    view = PreviewState(builder).build("2026-W47")
    assert view.render is None
    assert view.problem == Problem("unexpected", "RuntimeError: boom")


def test_the_worker_rebuilds_every_known_issue_and_tells_listeners(site: Path) -> None:
    builder = StandInBuilder(site)
    state = PreviewState(builder)
    state.build("2026-W47")
    state.build("2026-W46")
    events: list[BuildEvent] = []
    both = threading.Event()

    def listen(event: BuildEvent) -> None:
        events.append(event)
        if len(events) == 2:
            both.set()

    state.add_listener(listen)
    state.start()
    try:
        (site / "title.txt").write_text("Quiet Meetings\n", encoding="utf-8")
        state.request_rebuild(["title.txt"])
        assert both.wait(WAIT)
    finally:
        state.stop()
    assert [(e.issue_id, e.ok) for e in events] == [("2026-W46", True), ("2026-W47", True)]
    view = state.peek("2026-W47")
    assert view is not None and view.render is not None
    assert view.render.subject == "Field Notes: Quiet Meetings"


def test_view_refuses_anything_but_an_issue_id(site: Path) -> None:
    with pytest.raises(ValueError, match="not an issue id"):
        PreviewState(StandInBuilder(site)).view("../config")


# -- server -----------------------------------------------------------------------------------


def test_the_page_has_every_part_of_the_preview(
    client: tuple[TestClient, PreviewState, StandInBuilder],
) -> None:
    test_client, _, _ = client
    page = test_client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    for part in (
        'id="email"',
        'data-width="375"',
        'data-width="600"',
        'id="appearance"',
        'id="tab-text"',
        'id="tab-headers"',
        'id="inbox-subject"',
        'id="checks"',
        'id="week-picker"',
        'id="problem"',
        'data-issue="2026-W47"',
    ):
        assert part in page.text
    assert 'id="send-test"' not in page.text  # no provider: no button
    assert (
        test_client.get("/static/preview.js").headers["content-type"].startswith("text/javascript")
    )
    assert test_client.get("/static/preview.css").status_code == 200


def test_state_holds_what_the_page_draws(
    client: tuple[TestClient, PreviewState, StandInBuilder],
) -> None:
    test_client, _, _ = client
    data = test_client.get("/api/state", params={"week": "2026-W47"}).json()
    assert data["problem"] is None
    assert data["default_issue"] == "2026-W47"
    assert data["can_send"] is False
    assert data["weeks"] == [
        {"issue_id": "2026-W47", "label": "2026-W47 · 1 post", "archived": False},
        {"issue_id": "2026-W46", "label": "x", "archived": True},
    ]
    email = data["email"]
    assert email["subject"] == "Field Notes: The Meeting Budget"
    assert email["preheader"] == "This week: The Meeting Budget"
    assert email["from"] == "Field Notes Weekly <weekly@fieldnotes.example.com>"
    assert email["text"] == "The Meeting Budget\n\nUnsubscribe: [[digest:unsubscribe_url]]\n"
    assert email["headers"] == {"From": "Field Notes Weekly <weekly@fieldnotes.example.com>"}
    assert email["checks"] == [
        {"name": "size", "status": "pass", "message": "1 KB of 100 KB"},
        {"name": "alt-text", "status": "warn", "message": "1 image"},
    ]
    assert email["version"] == data["version"]
    assert email["url"] == f"/email/2026-W47.html?v={data['version']}"


def test_the_email_is_served_byte_for_byte(
    client: tuple[TestClient, PreviewState, StandInBuilder],
) -> None:
    test_client, state, _ = client
    test_client.get("/api/state")
    response = test_client.get("/email/2026-W47.html")
    view = state.peek("2026-W47")
    assert view is not None and view.render is not None
    assert response.content == view.render.html.encode("utf-8")
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_no_other_site_may_frame_the_preview(
    client: tuple[TestClient, PreviewState, StandInBuilder],
) -> None:
    test_client, _, _ = client
    test_client.get("/api/state")
    for path in ("/", "/api/state", "/static/preview.js"):
        response = test_client.get(path)
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'", path
        assert response.headers["x-frame-options"] == "DENY", path
    # the page shows the email in its own iframe: only the preview itself may frame it
    email = test_client.get("/email/2026-W47.html")
    assert email.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert email.headers["x-frame-options"] == "SAMEORIGIN"


def test_an_empty_week_shows_a_problem_not_an_error_page(
    client: tuple[TestClient, PreviewState, StandInBuilder],
) -> None:
    test_client, _, _ = client
    data = test_client.get("/api/state", params={"week": "2026-W01"}).json()
    assert data["email"] is None
    assert data["problem"]["kind"] == "empty"
    assert test_client.get("/email/2026-W01.html").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/page.html.j2",
        "/static/..%2F..%2Fconfig.yaml",
        "/static/../../config.yaml",
        "/email/..%2Fconfig.html",
        "/email/2026-W48.html",  # never built
        "/archive/..%2F..%2F/",
        "/archive/2026-W40/",
        "/config.yaml",
        "/templates/",
        "/content/posts/",
    ],
)
def test_only_the_preview_is_served(
    client: tuple[TestClient, PreviewState, StandInBuilder], path: str
) -> None:
    test_client, _, _ = client
    assert test_client.get(path).status_code == 404


def test_bad_weeks_are_refused(client: tuple[TestClient, PreviewState, StandInBuilder]) -> None:
    test_client, _, builder = client
    assert test_client.get("/", params={"week": "../etc"}).status_code == 400
    assert test_client.get("/api/state", params={"week": "2026-47"}).status_code == 400
    assert builder.calls == []


def test_the_archive_serves_built_issues(
    client: tuple[TestClient, PreviewState, StandInBuilder],
) -> None:
    test_client, _, _ = client
    assert test_client.get("/archive/2026-W46/").content == b"<p>archived</p>"


def test_requests_for_another_host_are_refused(
    client: tuple[TestClient, PreviewState, StandInBuilder],
) -> None:
    test_client, _, _ = client
    response = test_client.get("/api/state", headers={"Host": "attacker.example"})
    assert response.status_code == 421


def test_send_test_needs_a_sender_and_the_page_token(site: Path) -> None:
    sent: list[tuple[str, str]] = []

    def send_test(issue_id: str, to: str) -> str:
        if to == "refused@example.com":
            raise DigestError("postmark 422: inactive recipient")
        sent.append((issue_id, to))
        return f"sent [TEST] {issue_id} to {to}"

    state = PreviewState(StandInBuilder(site))
    options = PreviewOptions(default_issue="2026-W47", send_test=send_test)
    with TestClient(create_app(state, options)) as test_client:
        page = test_client.get("/").text
        assert 'id="send-test"' in page
        token = test_client.app.state.token  # type: ignore[attr-defined]
        assert f'content="{token}"' in page
        body = {"to": "you@example.com", "week": "2026-W47"}
        assert test_client.post("/api/send-test", json=body).status_code == 403
        wrong = test_client.post("/api/send-test", json=body, headers={"X-Preview-Token": "x"})
        assert wrong.status_code == 403
        ok = test_client.post("/api/send-test", json=body, headers={"X-Preview-Token": token})
        assert ok.json() == {"ok": True, "message": "sent [TEST] 2026-W47 to you@example.com"}
        refused = test_client.post(
            "/api/send-test",
            json={"to": "refused@example.com"},
            headers={"X-Preview-Token": token},
        )
        assert refused.status_code == 502
        assert refused.json() == {"error": "postmark 422: inactive recipient"}
        junk = test_client.post(
            "/api/send-test", json={"to": "nobody"}, headers={"X-Preview-Token": token}
        )
        assert junk.status_code == 400
    assert sent == [("2026-W47", "you@example.com")]


# -- watcher ----------------------------------------------------------------------------------


def test_watch_set_counts_only_its_folders_and_files(tmp_path: Path) -> None:
    posts = tmp_path / "content" / "posts"
    posts.mkdir(parents=True)
    config = tmp_path / "config.yaml"
    config.write_text("x", encoding="utf-8")
    watch_set = WatchSet((posts,), (config,))
    root = tmp_path.resolve()
    assert watch_set.roots() == [root]  # posts lie inside the config's folder
    assert watch_set.wants(str(root / "content" / "posts" / "a.md"))
    assert watch_set.wants(str(root / "config.yaml"))
    assert not watch_set.wants(str(root / "out" / "2026-W47" / "email.html"))
    assert not watch_set.wants(str(root / "config.yaml.bak"))


def test_the_watcher_reports_a_saved_file(tmp_path: Path) -> None:
    posts = tmp_path / "posts"
    posts.mkdir()
    seen: list[str] = []
    got = threading.Event()

    def on_change(paths: list[str]) -> None:  # type: ignore[type-arg]
        seen.extend(paths)
        if any(p.endswith("new.md") for p in paths):
            got.set()

    watcher = Watcher(lambda: WatchSet((posts,)), on_change)
    watcher.start()
    try:
        # The watch starts asynchronously: keep saving until it is noticed.
        for attempt in range(int(WAIT / 0.25)):
            (posts / "new.md").write_text(f"title: {attempt}\n", encoding="utf-8")
            (tmp_path / "ignored.txt").write_text("x", encoding="utf-8")
            if got.wait(0.25):
                break
    finally:
        watcher.stop()
    assert got.is_set()
    assert all(p.endswith("new.md") for p in seen)


def _save_until_seen(path: Path, seen: Callable[[], bool]) -> bool:
    """The watch starts asynchronously: keep saving ``path`` until ``seen()``."""
    for attempt in range(int(WAIT / 0.25)):
        if path.parent.is_dir():
            path.write_text(f"title: {attempt}\n", encoding="utf-8")
        deadline = time.monotonic() + 0.25
        while time.monotonic() < deadline:
            if seen():
                return True
            time.sleep(0.02)
    return False


def test_the_watcher_follows_the_config_to_new_folders_and_survives_mistakes(
    tmp_path: Path,
) -> None:
    """The folders come from a config file: saving it moves the watch; a config that cannot
    be read keeps the last folders; a failing handler does not end the watch."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = tmp_path / "site" / "config.txt"
    config.parent.mkdir()
    config.write_text("a")
    seen: list[str] = []
    calls = 0

    def watch_set() -> WatchSet:
        name = config.read_text().strip()
        if name not in ("a", "b", "later"):
            raise ValueError(f"no folder {name!r}")
        return WatchSet((tmp_path / name,), (config,))

    def on_change(paths: Sequence[str]) -> None:
        nonlocal calls
        calls += 1
        seen.extend(paths)
        if calls == 1:
            raise RuntimeError("the first rebuild fails")

    watcher = Watcher(watch_set, on_change)
    watcher.start()
    try:
        assert _save_until_seen(tmp_path / "a" / "one.md", lambda: any("one.md" in p for p in seen))
        config.write_text("b")  # the watch moves to b
        assert _save_until_seen(tmp_path / "b" / "two.md", lambda: any("two.md" in p for p in seen))
        assert watcher.watching == WatchSet((tmp_path / "b",), (config,))
        config.write_text("broken")  # cannot be read: b stays watched
        assert _save_until_seen(
            tmp_path / "b" / "three.md", lambda: any("three.md" in p for p in seen)
        )
        assert watcher.watching == WatchSet((tmp_path / "b",), (config,))
    finally:
        watcher.stop()
    assert calls >= 3  # it went on after the first handler failed
    assert all(p.endswith(".md") or p == str(config.resolve()) for p in seen)


def test_the_watcher_waits_for_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    later = tmp_path / "later"
    seen: list[str] = []
    asked = 0

    def watch_set() -> WatchSet:
        nonlocal asked
        asked += 1
        if asked == 2:  # the folder appears after the watcher found nothing to watch
            later.mkdir()
        return WatchSet((later,))

    watcher = Watcher(watch_set, seen.extend)
    watcher.start()
    try:
        assert _save_until_seen(later / "new.md", lambda: any("new.md" in p for p in seen))
    finally:
        watcher.stop()
    assert asked >= 2


# -- the whole server, on a real socket -------------------------------------------------------


@pytest.mark.integration
def test_a_saved_file_reaches_the_event_stream(site: Path) -> None:
    ready = threading.Event()
    stop = threading.Event()
    urls: list[str] = []

    def on_ready(url: str, state: PreviewState) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(
        target=run_preview,
        args=(StandInBuilder(site),),
        kwargs={
            "issue_id": "2026-W47",
            "port": 0,
            "watch_set": lambda: WatchSet((site,)),
            "on_ready": on_ready,
            "stop": stop,
        },
        daemon=True,
    )
    thread.start()
    try:
        assert ready.wait(WAIT)
        url = urls[0]
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=WAIT) as http:
            first = http.get("/api/state").json()
            assert first["email"]["subject"] == "Field Notes: The Meeting Budget"
            with http.stream("GET", "/events") as events:
                lines = events.iter_lines()
                assert next(lines) == "retry: 500"
                for attempt in range(40):
                    (site / "title.txt").write_text(
                        f"Walking Meetings {attempt}\n", encoding="utf-8"
                    )
                    line = next(lines)
                    while not line.startswith("data: "):
                        line = next(lines)
                    event = json.loads(line[len("data: ") :])
                    if event["version"] > first["version"]:
                        break
            assert event["issue_id"] == "2026-W47" and event["ok"] is True
            after = http.get("/api/state").json()
            assert after["email"]["subject"].startswith("Field Notes: Walking Meetings")
            assert after["version"] > first["version"]
            # Only the preview's own Host names are accepted.
            assert http.get("/", headers={"Host": "evil.example:80"}).status_code == 421
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()


# -- the real site: digest build behind the preview -------------------------------------------

NOW = datetime(2026, 11, 23, 22, 0, tzinfo=timezone.utc)


@pytest.mark.integration
def test_the_preview_serves_the_bytes_digest_build_writes(sample_site: Path) -> None:
    built = run_digest("build", "--week", "2026-W47", cwd=sample_site)
    assert built.returncode == 0, built.stderr
    written = (sample_site / "out" / "2026-W47" / "email.html").read_bytes()

    state = PreviewState(SitePreview(sample_site / "config.yaml", lambda: NOW))
    view = state.view("2026-W47")
    assert view.problem is None and view.render is not None
    with TestClient(create_app(state, PreviewOptions(default_issue="2026-W47"))) as test_client:
        served = test_client.get("/email/2026-W47.html").content
    assert served == written
    assert (sample_site / "out" / "2026-W47" / "email.txt").read_text(encoding="utf-8") == (
        view.render.text
    )


@pytest.mark.integration
def test_a_real_site_lists_weeks_watches_its_files_and_reads_the_archive(
    sample_site: Path,
) -> None:
    site = SitePreview(sample_site / "config.yaml", lambda: NOW)
    render = site("2026-W47")
    assert render.issue_id == "2026-W47"
    assert render.subject == "Field Notes Weekly: quieter meetings, louder tools"
    assert {c.status for c in render.checks} <= {"pass", "warn", "fail"}
    # the sample site's broken post is named first, then the email's own checks
    assert [c.name for c in render.checks][:3] == ["skipped posts", "size", "images"]

    weeks = site.weeks()
    assert weeks[0] == WeekChoice("2026-W47", "2026-W47 · 6 posts")
    assert not any(w.archived for w in weeks)  # nothing built yet
    assert all(w.issue_id <= "2026-W47" for w in weeks)  # no future weeks

    watched = site.watch_set()
    root = sample_site.resolve()
    assert watched.files == (root / "config.yaml",)
    assert root / "content" / "posts" in watched.folders
    assert root / "content" / "issues" in watched.folders
    assert BUILTIN_TEMPLATES in watched.folders

    assert site.archive("2026-W47") is None
    assert run_digest("build", "--week", "2026-W47", cwd=sample_site).returncode == 0
    site("2026-W47")
    assert site.archive("2026-W47") is None  # built, not sent: not public
    build = run_digest("build", "--week", "2026-W47", "--publish", cwd=sample_site)
    assert build.returncode == 0
    site("2026-W47")  # a build forgets the cached week list
    assert WeekChoice("2026-W47", "2026-W47", archived=True) in site.weeks()
    page = site.archive("2026-W47")
    assert page == (sample_site / "out" / "archive" / "2026-W47" / "index.html").read_bytes()
    assert site.archive("../2026-W47") is None


def test_a_broken_config_shows_where_and_keeps_the_last_email(sample_site: Path) -> None:
    config = sample_site / "config.yaml"
    state = PreviewState(SitePreview(config, lambda: NOW))
    good = state.view("2026-W47")
    assert good.render is not None

    original = config.read_text(encoding="utf-8")
    config.write_text(original.replace("limits:\n", "limts:\n"), encoding="utf-8")
    bad = state.build("2026-W47")
    assert bad.render is good.render
    assert bad.problem is not None and bad.problem.kind == "config"
    assert bad.problem.details == ("limts: unknown key; did you mean 'limits'?",)

    config.write_text(original.replace("timezone: Europe/Berlin", "timezone: [Europe"), "utf-8")
    yaml_problem = state.build("2026-W47").problem
    assert yaml_problem is not None
    assert (yaml_problem.kind, yaml_problem.path) == ("config", str(config.resolve()))
    assert yaml_problem.line is not None
    assert any("timezone: [Europe" in text for _, text in yaml_problem.snippet)

    config.write_text(original, encoding="utf-8")
    assert state.build("2026-W47").problem is None


def test_no_secret_reaches_the_page(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "pm-secret-value-4242"
    monkeypatch.setenv("POSTMARK_TOKEN", secret)
    monkeypatch.setenv("DIGEST_SECRET", secret)
    config = sample_site / "config.yaml"
    text = config.read_text(encoding="utf-8").replace(
        "serve:\n", 'serve:\n  secret: "${DIGEST_SECRET}"\n'
    )
    config.write_text(text, encoding="utf-8")
    site = SitePreview(config, lambda: NOW)
    state = PreviewState(site)
    options = PreviewOptions("2026-W47", weeks=site.weeks, archive=site.archive)
    with TestClient(create_app(state, options)) as test_client:
        bodies = [
            test_client.get("/").text,
            test_client.get("/api/state").text,
            test_client.get("/email/2026-W47.html").text,
        ]
    assert state.peek("2026-W47") is not None
    assert all(secret not in body for body in bodies)


@pytest.mark.integration
def test_preview_help_has_examples() -> None:
    result = run_digest("preview", "--help", cwd=Path.cwd())
    assert result.returncode == 0
    assert "digest preview --week 2026-W47 --open" in result.stdout
    assert "--host ADDRESS" in result.stdout


def test_send_test_button_only_with_a_real_provider(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.delivery.send
    from digest.config import ProviderConfig
    from digest.delivery.providers.base import Result

    site = SitePreview(sample_site / "config.yaml", lambda: NOW)
    assert send_test_for(site) is None  # nothing loaded yet
    config = site.config()
    assert send_test_for(site) is None  # the sample site writes to the outbox

    calls: list[tuple[str, str | None]] = []

    def fake_send_test(config: object, to: str, *, now: datetime, week: str | None) -> Result:
        calls.append((to, week))
        if to == "bounce@example.com":
            return Result(0, "failed-permanent", reason="422 inactive recipient")
        return Result(0, "sent", provider_message_id="abc-123")

    monkeypatch.setattr(digest.delivery.send, "send_test", fake_send_test)
    site.last_config = config.model_copy(update={"provider": ProviderConfig(name="smtp")})
    action = send_test_for(site)
    assert action is not None
    assert action("2026-W47", "you@example.com") == (
        "sent a [TEST] of 2026-W47 to you@example.com (message abc-123)"
    )
    with pytest.raises(SendError, match="not sent: 422 inactive recipient"):
        action("2026-W47", "bounce@example.com")
    assert calls == [("you@example.com", "2026-W47"), ("bounce@example.com", "2026-W47")]


def test_open_without_a_browser_says_so_and_prints_the_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import webbrowser

    from digest.cli.preview import open_in_browser

    asked: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: asked.append(url) or False)
    open_in_browser("http://127.0.0.1:8000/")
    assert asked == ["http://127.0.0.1:8000/"]
    assert capsys.readouterr().err == (
        "no browser found to open the preview; open http://127.0.0.1:8000/ in yours\n"
    )
    monkeypatch.setattr(webbrowser, "open", lambda url: True)
    open_in_browser("http://127.0.0.1:8000/")
    assert capsys.readouterr().err == ""
