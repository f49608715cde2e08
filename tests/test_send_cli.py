"""`digest send/status/check` as a user meets them: the empty list, new subscribers,
preflight, stopping with a signal, --json failures, and schedules that name absolute paths."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from digest.audience.subscribers import SubscriberStore
from digest.cli import main
from digest.config import load_config
from tests.emulators.providers import run_emulator
from tests.helpers import cpu_time, wait_for

from .conftest import run_digest

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WEEK = "2026-W47"


def add(site: Path, *emails: str) -> None:
    config = load_config(site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        for email in emails:
            store.add(email, name=email.split("@")[0], categories=(), now=NOW)


def ledger_rows(site: Path) -> dict[str, str]:
    path = site / "data/ledger.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT email, state FROM deliveries").fetchall())


def set_provider(site: Path, provider: dict[str, Any], **send: Any) -> None:
    path = site / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["provider"] = provider
    if send:
        data["send"] = send
    path.write_text(yaml.safe_dump(data))


# --------------------------------------------------------------------------- who gets it


@pytest.mark.integration
def test_sending_to_nobody_records_nothing_and_exits_5(sample_site: Path) -> None:
    result = run_digest("send", "--week", WEEK, cwd=sample_site)
    assert result.returncode == 5
    assert "no active subscribers in" in result.stderr
    assert "nothing was recorded" in result.stderr
    assert ledger_rows(sample_site) == {}
    add(sample_site, "ann@example.com")  # the import that should have come first
    later = run_digest("send", "--week", WEEK, cwd=sample_site)
    assert later.returncode == 0, later.stderr
    assert ledger_rows(sample_site) == {"ann@example.com": "sent"}


@pytest.mark.integration
def test_new_subscribers_are_counted_and_sent_only_when_asked(sample_site: Path) -> None:
    add(sample_site, "ann@example.com", "bob@example.com")
    assert run_digest("send", "--week", WEEK, cwd=sample_site).returncode == 0
    add(sample_site, "cy@example.com", "di@example.com")
    status = run_digest("status", "--week", WEEK, "--json", cwd=sample_site)
    assert json.loads(status.stdout)["new_subscribers"] == 2
    plain = run_digest("status", "--week", WEEK, cwd=sample_site)
    assert "2 subscribers joined since it was sent" in plain.stdout
    refused = run_digest("send", "--week", WEEK, cwd=sample_site)
    assert refused.returncode == 5
    assert "2 subscribers joined since" in refused.stderr and "--new-subscribers" in refused.stderr
    assert set(ledger_rows(sample_site)) == {"ann@example.com", "bob@example.com"}
    sent = run_digest("send", "--week", WEEK, "--new-subscribers", "--json", cwd=sample_site)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 2
    assert ledger_rows(sample_site) == dict.fromkeys(
        ["ann@example.com", "bob@example.com", "cy@example.com", "di@example.com"], "sent"
    )
    outbox = sample_site / "out" / WEEK / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 4  # the first two were not mailed again
    nothing = run_digest("send", "--week", WEEK, "--new-subscribers", cwd=sample_site)
    assert nothing.returncode == 5 and "nobody joined since" in nothing.stderr


# --------------------------------------------------------------------------- preflight


@pytest.mark.integration
def test_check_and_dry_run_name_unset_variables_and_the_real_config_file(
    sample_site: Path,
) -> None:
    config_path = sample_site / "site.yaml"
    (sample_site / "config.yaml").rename(config_path)
    set_provider_path = config_path
    data = yaml.safe_load(set_provider_path.read_text())
    data["provider"] = {"name": "postmark", "token": "${PM_TOKEN_UNSET}"}
    set_provider_path.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k != "PM_TOKEN_UNSET"}
    add_cfg = ["--config", str(config_path)]
    check = subprocess.run(
        [sys.executable, "-m", "digest", *add_cfg, "check"],
        cwd=sample_site,
        env=env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 3
    assert "provider.token: ${PM_TOKEN_UNSET} is not set (needed by digest send)" in check.stdout
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "digest",
            *add_cfg,
            "send",
            "--week",
            WEEK,
            "--dry-run",
            "--offline",
        ],
        cwd=sample_site,
        env=env,
        capture_output=True,
        text=True,
    )
    assert f"not set: provider.token: ${{PM_TOKEN_UNSET}} ({config_path})" in dry.stdout
    with SubscriberStore(sample_site / "data/subscribers.sqlite") as store:
        store.add("ann@example.com", name="Ann", categories=(), now=NOW)
    real = subprocess.run(
        [sys.executable, "-m", "digest", *add_cfg, "send", "--week", WEEK, "--json"],
        cwd=sample_site,
        env=env,
        capture_output=True,
        text=True,
    )
    assert real.returncode == 3
    answer = json.loads(real.stdout)  # --json: the failure is JSON on stdout too
    assert answer["exit"] == 3
    assert str(config_path) in answer["error"] and "PM_TOKEN_UNSET" in answer["error"]
    assert "config.yaml" not in answer["error"]
    assert ledger_rows(sample_site) == {}  # nothing was queued, so nothing is stuck


@pytest.fixture(scope="module")
def postmark() -> Iterator[Any]:
    with run_emulator("postmark", key="pm-key") as emu:
        yield emu


@pytest.fixture(scope="module")
def mailgun() -> Iterator[Any]:
    with run_emulator("mailgun", key="mg-key") as emu:
        yield emu


@pytest.mark.integration
def test_check_provider_asks_once_and_reports_credentials_and_domain(
    sample_site: Path, mailgun: Any, postmark: Any
) -> None:
    (sample_site / "content/posts/broken-front-matter.md").unlink()  # posts: all fine
    set_provider(
        sample_site,
        {
            "name": "mailgun",
            "base_url": mailgun.url,
            "api_key": "${MG_KEY}",
            "domain": "mg.example.com",
        },
    )
    mailgun.reset()
    ok = run_digest("check", "--provider", cwd=sample_site, env={"MG_KEY": "mg-key"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "provider mailgun: credentials ok: API key accepted" in ok.stdout
    assert "provider mailgun: domain ok: mg.example.com is active" in ok.stdout
    asked = [r for r in mailgun.requests() if r["path"].startswith("/v3/domains/")]
    assert [(r["method"], r["status"]) for r in asked] == [("GET", 200)]
    assert all(r["method"] == "GET" for r in mailgun.requests())  # read-only
    mailgun.set_domain_verified(False)
    unverified = run_digest(
        "check", "--provider", "--json", cwd=sample_site, env={"MG_KEY": "mg-key"}
    )
    assert unverified.returncode == 1
    checks = json.loads(unverified.stdout)["preflight"]["checks"]
    assert checks[1] == {
        "name": "domain",
        "ok": False,
        "detail": "mg.example.com is unverified: verify its DNS records in Mailgun",
    }
    mailgun.set_domain_verified(True)
    wrong = run_digest("check", "--provider", cwd=sample_site, env={"MG_KEY": "nope"})
    assert wrong.returncode == 1
    assert "provider mailgun: credentials FAILED: mailgun 401" in wrong.stdout
    set_provider(sample_site, {"name": "postmark", "base_url": postmark.url, "token": "${PM_KEY}"})
    pm = run_digest("check", "--provider", cwd=sample_site, env={"PM_KEY": "pm-key"})
    assert pm.returncode == 0, pm.stdout
    assert "credentials ok: server token accepted" in pm.stdout


# --------------------------------------------------------------------------- stopping


def _slow_site(site: Path, emu: Any, n: int) -> None:
    set_provider(
        site,
        {"name": "postmark", "base_url": emu.url, "token": "${PM_KEY}", "reconcile_after": 0},
        batch_size=2,
        concurrency=1,
        progress_every=0.2,
        lease="2s",  # a hard stop leaves a leased batch; the rerun takes it soon
    )
    add(site, *[f"s{i:03d}@example.com" for i in range(n)])


def _running(process: subprocess.Popen[str]) -> bool:
    assert process.poll() is None, process.communicate()
    return True


def _wait_for(emu: Any, count: int, process: subprocess.Popen[str]) -> None:
    wait_for(
        lambda: _running(process) and len(emu.messages()) >= count,
        f"{count} messages at the emulator",
        progress=lambda: (len(emu.messages()), cpu_time(process.pid)),
    )


def _wait_for_request(emu: Any, process: subprocess.Popen[str]) -> None:
    """Until a send request is being held by the emulator's delay."""
    before = len(emu.requests())
    wait_for(
        lambda: _running(process) and len(emu.requests()) > before,
        "a send request at the emulator",
        progress=lambda: cpu_time(process.pid),
    )


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_a_safe_point_with_exit_6_and_the_rerun_resumes(
    signum: int, sample_site: Path, postmark: Any
) -> None:
    postmark.reset()
    postmark.set_faults(delay=0.1)
    _slow_site(sample_site, postmark, 40)
    env = {**os.environ, "PM_KEY": "pm-key"}
    command = [sys.executable, "-m", "digest", "send", "--week", WEEK]
    process = subprocess.Popen(
        command, cwd=sample_site, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(postmark, 4, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 6, err
    name = signal.Signals(signum).name
    assert f"{name}: stopping after the messages in flight" in err
    assert "; run the same command to resume" in err
    stopped_at = int(err.split("stopped after ")[1].split(" of ")[0])
    assert 4 <= stopped_at < 40
    assert "sending: " in err  # not a terminal: progress lines on stderr
    states = Counter(ledger_rows(sample_site).values())
    assert states["sent"] == len(postmark.messages()) == stopped_at
    assert set(states) <= {"sent", "pending"}  # a safe point: nothing in flight
    postmark.clear_faults()
    again = subprocess.run(command, cwd=sample_site, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert Counter(m["to"] for m in postmark.messages()) == Counter(
        {f"s{i:03d}@example.com": 1 for i in range(40)}
    )


@pytest.mark.integration
def test_a_second_ctrl_c_exits_at_once_and_the_ledger_stays_consistent(
    sample_site: Path, postmark: Any
) -> None:
    postmark.reset()
    postmark.set_faults(delay=0.2)
    _slow_site(sample_site, postmark, 20)
    env = {**os.environ, "PM_KEY": "pm-key"}
    command = [sys.executable, "-m", "digest", "send", "--week", WEEK]
    process = subprocess.Popen(
        command, cwd=sample_site, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(postmark, 2, process)
    postmark.set_faults(delay=3.0)  # the batch now in flight is slow to answer
    _wait_for_request(postmark, process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 6, err
    assert "stopped at once after" in err and "run the same command to resume" in err
    states = Counter(ledger_rows(sample_site).values())
    assert set(states) <= {"sent", "pending", "sending"}
    assert states["sending"] <= 2  # at most the one batch that was in flight
    postmark.clear_faults()
    wait_for(  # the held request ends at the server (it is accepted)
        lambda: all(r["status"] is not None for r in postmark.requests()),
        "the held request to end",
    )
    again = subprocess.run(command, cwd=sample_site, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    final = Counter(m["to"] for m in postmark.messages())
    assert set(final) == {f"s{i:03d}@example.com" for i in range(20)}
    assert max(final.values()) == 1  # the batch in flight was looked up, not resent blindly
    assert set(ledger_rows(sample_site).values()) == {"sent"}


# --------------------------------------------------------------------------- schedules


@pytest.mark.integration
def test_installed_schedules_name_absolute_paths(sample_site: Path) -> None:
    (sample_site / "config.yaml").rename(sample_site / "weekly.yaml")
    for kind in ("--cron", "--systemd"):
        result = run_digest("--config", "weekly.yaml", "schedule", "install", kind, cwd=sample_site)
        assert result.returncode == 0, result.stderr
        program = Path(sys.executable).parent / "digest"
        # The sample site has two newsletters: a crontab entry per newsletter names its own;
        # the systemd service runs `digest run` for all of them.
        chosen = " --newsletter weekly" if kind == "--cron" else ""
        expected = f"{program} --config {(sample_site / 'weekly.yaml').resolve()}{chosen} run"
        assert expected in result.stdout
        assert " digest --config" not in result.stdout and "=digest " not in result.stdout


# --------------------------------------------------------------------------- in-process
# The same commands through click's runner, so that what they print is measured in-process.


def invoke(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(site / "config.yaml"), *args])


@pytest.mark.integration  # the dry run probes the List-Unsubscribe URL on loopback
def test_dry_run_shows_each_variant_and_a_sample_and_records_nothing(sample_site: Path) -> None:
    add(sample_site, "ann@example.com")
    config = load_config(sample_site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("bob@example.com", name="Bob", categories=("Tools",), now=NOW)
    result = invoke(sample_site, "send", "--week", WEEK, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{WEEK}: dry run, nothing sent",
        "  would send 2 messages via outbox",
        "          1  Tools",
        "          1  all",
        "  subject: Field Notes Weekly: quieter meetings, louder tools",
        "  e.g. ann@example.com (every section)",
        "  e.g. bob@example.com (Tools)",
        "deliverability: ok (fieldnotes.example.com via outbox)",
        "  dns skipped: info: outbox: the messages stay on this machine, so the From domain's "
        "DNS is checked when a provider that sends is configured",
        "  presend list-unsubscribe: warning: one-click, plain http on this machine (fine for "
        "testing only): http://127.0.0.1:8025/unsubscribe/preview",
        "    set serve.public_url to the public https address before sending for real",
        "  presend https: warning: links use plain http on this machine; "
        "http://127.0.0.1:8025/archive/2026-W47/ is plain http on this machine "
        "(fine for testing only)",
        "    set serve.public_url to the public https address before sending for real",
        "  unsubscribe reachable: warning: http://127.0.0.1:8025/unsubscribe/preview: cannot "
        "connect (ConnectError: [Errno 111] Connection refused)",
        "    start `digest serve` where serve.public_url points (http://127.0.0.1:8025)",
        "  16 passed (--json lists each)",
    ]
    assert ledger_rows(sample_site) == {}
    refused = invoke(sample_site, "send", "--week", WEEK, "--dry-run", "--workers", "2")
    assert refused.exit_code == 2
    assert "--workers cannot be combined with --dry-run, --limit or --new-subscribers" in (
        refused.stderr
    )


@pytest.mark.integration  # the dry run probes the List-Unsubscribe URL on loopback
def test_a_dry_run_without_subscribers_says_how_to_add_them(sample_site: Path) -> None:
    result = invoke(sample_site, "send", "--week", WEEK, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "  would send 0 messages via outbox" in result.stdout
    assert (
        "  no active subscriber is waiting for this issue "
        "(add some with: digest subscribers import FILE)"
    ) in result.stdout


def test_limit_then_resume_and_the_status_on_the_way(sample_site: Path) -> None:
    add(sample_site, "ann@example.com", "bob@example.com")
    before = invoke(sample_site, "status", "--week", WEEK)
    assert before.exit_code == 0 and before.stdout == f"{WEEK}: not sent yet\n"
    first = invoke(sample_site, "send", "--week", WEEK, "--limit", "1")
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"{WEEK} via outbox: 1 sent, 0 failed, 0 uncertain, 0 skipped")
    assert lines[1:] == [
        "  ledger: pending 1, sent 1",
        "  stopped at --limit; run the same command again to go on",
        f"  report: {sample_site / 'out' / WEEK / 'send-report.json'}",
    ]
    half = invoke(sample_site, "status", "--week", WEEK)
    assert half.stdout.splitlines()[:4] == [
        f"{WEEK}: not complete (1 run)",
        "  pending                 1",
        "  sending                 0",
        "  sent                    1",
    ]
    rest = invoke(sample_site, "send", "--week", WEEK, "--json")
    assert rest.exit_code == 0, rest.output
    answer = json.loads(rest.stdout)
    assert (answer["sent"], answer["complete"]) == (1, True)
    assert ledger_rows(sample_site) == {"ann@example.com": "sent", "bob@example.com": "sent"}
    done = invoke(sample_site, "status", "--week", WEEK)
    assert done.stdout.splitlines()[0] == f"{WEEK}: complete (2 runs)"


def test_a_test_message_goes_to_the_outbox_and_not_to_the_ledger(sample_site: Path) -> None:
    result = invoke(sample_site, "send", "--week", WEEK, "--test", "me@example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout == "test message to me@example.com: sent\n"
    assert ledger_rows(sample_site) == {}
    sent = list((sample_site / "out" / WEEK / "outbox").glob("*.eml"))
    assert len(sent) == 1
    assert "Subject: [TEST] Field Notes Weekly" in sent[0].read_text()


@pytest.mark.integration
def test_refused_and_uncertain_recipients_are_named_by_send_and_status(
    sample_site: Path, postmark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PM_KEY", "pm-key")
    set_provider(
        sample_site,
        {"name": "postmark", "base_url": postmark.url, "token": "${PM_KEY}"},
        batch_size=1,
        concurrency=1,
    )
    add(sample_site, "ann@example.com", "bob@example.com", "cy@example.com")
    postmark.reset()
    # bob is refused; the first request gets no answer and Postmark has no record of it
    # yet (it may still be on its way, so it stays uncertain: not sent again, not sent)
    postmark.set_faults(reject_pattern="^bob@", drop_before=1)
    try:
        sent = invoke(sample_site, "send", "--week", WEEK)
        assert sent.exit_code == 1, sent.output
        out = sent.stdout
        assert f"{WEEK} via postmark: 1 sent, 1 failed, 1 uncertain, 0 skipped" in out
        assert "  ledger: sent 1, failed-permanent 1, uncertain 1" in out
        assert (
            "  1 uncertain: they may or may not have reached postmark (no answer came) and are "
            "not counted as sent; `digest send --resend-uncertain` sends them again"
        ) in out
        assert "    ann@example.com: " in out  # the first request's recipient, held uncertain
        assert "  failed-permanent: bob@example.com: postmark 406: " in out
        assert "  not finished; run the same command again to resume" in out
        assert ledger_rows(sample_site) == {
            "ann@example.com": "uncertain",
            "bob@example.com": "failed-permanent",
            "cy@example.com": "sent",
        }
        status = invoke(sample_site, "status", "--week", WEEK)
        assert status.exit_code == 0
        assert (
            "  1 uncertain (no answer came; not counted as sent): "
            "`digest send --resend-uncertain` sends them again"
        ) in status.stdout
        assert (
            "  what settles them: asked automatically: Postmark's outbound message search (the "
            "issue's tag and the batch id, from the original attempt); a message missing five "
            "minutes after it is sent again\n    ann@example.com: "
        ) in status.stdout
        assert "  failed-permanent: bob@example.com: postmark 406: " in status.stdout
        # once Postmark's records are trusted (reconcile_after 0), the next run asks them
        # and sends the message they do not hold
        set_provider(
            sample_site,
            {"name": "postmark", "base_url": postmark.url, "token": "${PM_KEY}",
             "reconcile_after": 0},
            batch_size=1,
        )  # fmt: skip
        again = invoke(sample_site, "send", "--week", WEEK)
        assert again.exit_code == 1  # bob's refusal stands
        assert "  uncertain messages settled: not-accepted 1" in again.stdout
        assert ledger_rows(sample_site)["ann@example.com"] == "sent"
        refused = invoke(sample_site, "send", "--week", WEEK, "--test", "bob@example.com")
        assert refused.exit_code == 1
        assert refused.stdout.startswith(
            "test message to bob@example.com: failed-permanent postmark"
        )
    finally:
        postmark.reset()


def test_a_dry_run_names_unset_variables_and_subscribers_without_posts(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PM_UNSET", raising=False)
    set_provider(sample_site, {"name": "postmark", "token": "${PM_UNSET}"})
    config = load_config(sample_site / "config.yaml")
    with SubscriberStore(config.path(config.subscribers.database)) as store:
        store.add("ann@example.com", name="Ann", categories=("Tools",), now=NOW)
        store.add("eve@example.com", name="Eve", categories=("Healthcare",), now=NOW)
    result = invoke(sample_site, "send", "--week", "2026-W46", "--dry-run", "--offline")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  would send 1 messages via postmark" in lines
    assert "  1 subscribers have no posts in their sections" in lines
    assert (
        f"  not set: provider.token: ${{PM_UNSET}} ({sample_site / 'config.yaml'}) "
        "(export it before sending)"
    ) in lines


def test_progress_is_a_bar_on_a_terminal(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.cli.send

    monkeypatch.setattr(digest.cli.send, "isatty", lambda: True)
    add(sample_site, "ann@example.com", "bob@example.com")
    result = invoke(sample_site, "send", "--week", WEEK)
    assert result.exit_code == 0, result.output
    # the bar, not the log lines (click draws the bar itself only on a real terminal)
    assert result.stderr.startswith("sending")
    assert "sending: " not in result.stderr
    assert result.stdout.startswith(f"{WEEK} via outbox: 2 sent, ")


def test_progress_lines_in_a_log_say_how_far_and_how_long(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from digest.cli.send import _Progress

    progress = _Progress(tty=False, every=0.0)
    progress(1, 4)
    progress(4, 4)
    quiet = _Progress(tty=False, every=0.0, enabled=False)
    quiet(1, 4)
    assert (quiet.total, quiet.done) == (4, 0)  # counted, not shown
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"sending: 1 of 4 \([\d,]+ msg/s, about [\d,]+s left\)", lines[0])
    assert re.fullmatch(r"sending: 4 of 4 \([\d,]+ msg/s\)", lines[1])


def test_the_first_signal_asks_to_stop_and_the_second_stops_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from digest.cli.send import _Stopper

    before = signal.getsignal(signal.SIGTERM)
    with _Stopper() as stopper:
        assert signal.getsignal(signal.SIGTERM) == stopper.handle
        assert not stopper()
        stopper.handle(signal.SIGTERM, None)
        assert stopper()
        with pytest.raises(KeyboardInterrupt):
            stopper.handle(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGTERM) == before
    assert capsys.readouterr().err == (
        "\nSIGTERM: stopping after the messages in flight (press Ctrl-C again to stop at once)\n"
    )


def test_progress_off_a_terminal_is_a_line_per_interval_never_above_the_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from digest.cli.send import _Progress

    moments = [0.0]
    progress = _Progress(tty=False, every=10.0, clock=lambda: moments[-1])
    for step in range(1, 71):  # 35 s of results, two a second; retries count past the total
        moments.append(step / 2)
        progress(step, 50)
    progress.close()
    progress.close()  # the final line once
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "sending: 20 of 50",
        "sending: 40 of 50",
        "sending: 50 of 50",  # at 30 s: 60 results, shown as the 50 there are
    ]  # and no line at close: it showed where it ended already
    assert lines[0] == "sending: 20 of 50 (2 msg/s, about 15s left)"


@pytest.mark.integration
def test_a_double_ctrl_c_on_the_outbox_exits_6_and_the_rerun_sends_the_rest(
    sample_site: Path,
) -> None:
    set_provider(sample_site, {"name": "outbox"}, progress_every=0.2, lease="2s")
    emails = [f"s{i:04d}@example.com" for i in range(1500)]
    add(sample_site, *emails)
    command = [sys.executable, "-m", "digest", "send", "--week", WEEK]
    process = subprocess.Popen(
        command, cwd=sample_site, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    outbox = sample_site / "out" / WEEK / "outbox"
    deadline = time.monotonic() + 120
    while not (outbox.is_dir() and any(outbox.glob("*.eml"))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 6, err
    assert "run the same command to resume" in err
    assert "Traceback" not in err
    again = subprocess.run(command, cwd=sample_site, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert set(ledger_rows(sample_site).values()) == {"sent"}
    assert len(list(outbox.glob("*.eml"))) == len(emails)


def test_after_a_stop_a_further_signal_cannot_kill_the_process_on_its_way_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from digest.cli.send import _Stopper
    from digest.errors import SendError

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SendError), _Stopper() as stopper:
            stopper.handle(signal.SIGINT, None)
            raise SendError("stopped after 3 of 9; run the same command to resume")
        # the CLI still has to print and exit 6: a second Ctrl-C there used to exit -2
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    with _Stopper():  # a run that ends normally puts the handlers back
        pass
    assert signal.getsignal(signal.SIGINT) == before[signal.SIGINT]
    assert capsys.readouterr().err.startswith("\nSIGINT: stopping after the messages in flight")
