"""Sending: the per-variant wire template against the reference message, and the send loop
through the outbox (resume, limits, dry run, refusals, failures, preferences, tokens)."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

import pytest

from digest.audience.subscribers import SubscriberStore, unsubscribe
from digest.audience.tokens import (
    Subject,
    TokenError,
    signing_key,
    token_secret,
    verify_token,
)
from digest.config import Config, load_config
from digest.delivery.ledger import FAILED_PERMANENT, PENDING, SENDING, SENT, SKIPPED, Ledger
from digest.delivery.providers import outbox as outbox_module
from digest.delivery.providers.base import WIRE_POLICY, Batch, Event, Result
from digest.delivery.providers.outbox import OutboxProvider
from digest.delivery.providers.smtp import _data_bytes
from digest.delivery.send import send_issue
from digest.email import build
from digest.email.message import ComposedEmail, WireTemplate, qp_lines, to_message
from digest.errors import NothingToSend, ProviderError, SendError
from digest.store.database import locate
from tests.helpers import edit_config

from .conftest import run_digest

pytestmark = pytest.mark.backends

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- wire template


@pytest.fixture(scope="module")
def composed() -> ComposedEmail:
    config = load_config(ROOT / "config.yaml")
    result = build.build_issue(config, now=NOW, week="2026-W47", write=False)
    email: ComposedEmail = result.composed
    return email


def _values(name: str, url_tail: str = "tok") -> dict[str, str]:
    return {
        "name": name,
        "unsubscribe_url": f"https://fieldnotes.example.com/unsubscribe/{url_tail}",
        "preferences_url": f"https://fieldnotes.example.com/preferences/{url_tail}",
    }


RECIPIENTS = [
    ("ada@example.com", _values("Ada"), "<2026-W47.a1@fieldnotes.example.com>"),
    (
        "Zoë Ünïcode-Ça <zoe+news@example.org>",
        _values("Zoë Ünïcode-Ça", "zo%C3%AB"),
        "<2026-W47.b2@fieldnotes.example.com>",
    ),
    ("long@example.net", _values("Long", "x" * 400), "<2026-W47.c3@fieldnotes.example.com>"),
    ("esc@example.com", _values('<b>"Tom" & Jerry</b>'), "<2026-W47.d4@fieldnotes.example.com>"),
    ("noname@example.com", _values(""), "<2026-W47.e5@fieldnotes.example.com>"),
]


def _parse(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _assert_same_message(fast: bytes, reference: bytes) -> None:
    got, want = _parse(fast), _parse(reference)
    assert not got.defects and not want.defects
    names = [k for k, _ in want.items()]
    assert [k for k, _ in got.items()] == names
    for name in names:
        if name == "Content-Type":
            assert got.get_content_type() == want.get_content_type() == "multipart/alternative"
            continue
        assert str(got[name]) == str(want[name]), name
    got_parts, want_parts = list(got.iter_parts()), list(want.iter_parts())
    assert len(got_parts) == len(want_parts) == 2
    for g, w in zip(got_parts, want_parts, strict=True):
        assert g.items() == w.items()
        assert g.get_content() == w.get_content()
    # Wire form: CRLF only, no line over 998, body lines within the RFC 2045 limit of 76.
    assert b"\n" not in fast.replace(b"\r\n", b"") and b"\r" not in fast.replace(b"\r\n", b"")
    head, _, body = fast.partition(b"\r\n\r\n")
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert fast.isascii()


@pytest.mark.parametrize(("to", "values", "message_id"), RECIPIENTS)
def test_wire_template_matches_to_message(
    composed: ComposedEmail, to: str, values: dict[str, str], message_id: str
) -> None:
    template = WireTemplate(composed, date=NOW)
    fast = template.render(to=to, values=values, message_id=message_id)
    reference = to_message(composed, to=to, values=values, message_id=message_id, date=NOW)
    _assert_same_message(fast, reference.as_bytes(policy=WIRE_POLICY))
    html = _parse(fast).get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert values["unsubscribe_url"] in content
    assert "[[digest:" not in content


def test_wire_template_encodes_a_non_ascii_display_name(composed: ComposedEmail) -> None:
    template = WireTemplate(composed, date=NOW)
    to, values, message_id = RECIPIENTS[1]
    fast = template.render(to=to, values=values, message_id=message_id)
    to_line = next(line for line in fast.split(b"\r\n") if line.startswith(b"To: "))
    assert to_line == b"To: =?utf-8?b?Wm/DqyDDnG7Dr2NvZGUtw4dh?= <zoe+news@example.org>"
    assert str(_parse(fast)["To"]) == "Zoë Ünïcode-Ça <zoe+news@example.org>"


def test_wire_template_with_markers_in_the_subject_and_awkward_text(
    composed: ComposedEmail,
) -> None:
    odd = dataclasses.replace(
        composed,
        subject="Für [[digest:name]] — die Wöche in " + "sehr langen Worten " * 6,
        text=(
            "trailing space \n.leading dot\n"
            + "x" * 200
            + "\r\nCR only\rtab\t\nHi [[digest:name]] \nend = [[digest:email]]"
        ),
        html=composed.html.replace("<body", "<body data-x='=[[digest:name]]='", 1),
    )
    template = WireTemplate(odd, date=NOW)
    for to, values, message_id in RECIPIENTS:
        fast = template.render(to=to, values=values, message_id=message_id)
        reference = to_message(odd, to=to, values=values, message_id=message_id, date=NOW)
        _assert_same_message(fast, reference.as_bytes(policy=WIRE_POLICY))
    ada = _parse(template.render(to="ada@example.com", values=_values("Ada"), message_id="<a@b>"))
    assert str(ada["Subject"]).startswith("Für Ada — die Wöche")


def test_wire_template_boundary_is_fixed_per_variant(composed: ComposedEmail) -> None:
    template = WireTemplate(composed, date=NOW)
    first = _parse(template.render(to="a@example.com", values=_values("A"), message_id="<1@x>"))
    second = _parse(template.render(to="b@example.com", values=_values("B"), message_id="<2@x>"))
    assert first.get_boundary() == second.get_boundary()
    assert str(first.get_boundary()).startswith("=_digest_")
    other = WireTemplate(dataclasses.replace(composed, html=composed.html + " "), date=NOW)
    third = _parse(other.render(to="a@example.com", values=_values("A"), message_id="<1@x>"))
    assert third.get_boundary() != first.get_boundary()


def test_qp_lines_follows_rfc_2045() -> None:
    assert qp_lines("a = b\n") == b"a =3D b\r\n"
    assert qp_lines("end space \nend tab\t") == b"end space=20\r\nend tab=09\r\n"
    assert qp_lines("é\r\n.dot") == b"=C3=A9\r\n.dot\r\n"
    long = qp_lines("y" * 100)
    assert long == b"y" * 75 + b"=\r\n" + b"y" * 25 + b"\r\n"


def test_smtp_data_bytes_fast_path_matches_the_general_one() -> None:
    crlf = b"From: a\r\n\r\n.one\r\ntwo\r\n..three\r\n"
    assert _data_bytes(crlf) == b"From: a\r\n\r\n..one\r\ntwo\r\n...three\r\n"
    assert _data_bytes(b".x\r\ny") == b"..x\r\ny\r\n"
    assert _data_bytes(b"a\n.b\rc") == b"a\r\n..b\r\nc\r\n"


# --------------------------------------------------------------------------- the send loop

WEEK = "2026-W47"
ALL_SECTIONS = ("WORK", "PRODUCTIVITY", "TOOLS", "RESEARCH", "HEALTH", "ETHICS")


def _site(sample_site: Path, *, batch_size: int = 10) -> Config:
    return edit_config(sample_site, send={"batch_size": batch_size})


def _populate(config: Config, n: int = 24) -> dict[str, set[str]]:
    """n active readers (a third all sections, a third Work, a third Tools+Research), and
    one of each status that must never be sent to."""
    groups: dict[str, set[str]] = {"active": set(), "gone": set()}
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        for i in range(n):
            cats = [(), ("Work",), ("Tools", "Research")][i % 3]
            email = f"reader{i:03d}@example.com"
            store.add(email, name=f"Reader {i}", categories=cats, now=NOW)
            groups["active"].add(email)
        for status in ("unsubscribed", "bounced", "complained"):
            store.add(f"{status}@example.com", name=status, status=status, now=NOW)
            groups["gone"].add(f"{status}@example.com")
    return groups


def _outbox(config: Config) -> Path:
    return config.path(config.out_dir) / WEEK / "outbox"


def _files(config: Config) -> dict[str, EmailMessage]:
    found: dict[str, EmailMessage] = {}
    for path in sorted(_outbox(config).glob("*.eml")):
        message = _parse(path.read_bytes())
        found[str(message["To"])] = message
    return found


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def _ledger_states(config: Config) -> dict[str, int]:
    with Ledger(locate(config, config.ledger.database)) as ledger:
        return {k: v for k, v in ledger.counts(WEEK).items() if v}


def test_outbox_send_reaches_every_active_subscriber_once(sample_site: Path) -> None:
    config = _site(sample_site)
    groups = _populate(config)
    seen: list[tuple[int, int]] = []
    report = send_issue(config, now=NOW, week=WEEK, progress=lambda d, t: seen.append((d, t)))
    assert (report.sent, report.failed_permanent, report.skipped, report.exit_code) == (24, 0, 0, 0)
    assert report.complete and report.variants == {"all": 8, "Work": 8, "Tools+Research": 8}
    files = _files(config)
    assert set(files) == groups["active"]
    assert not set(files) & groups["gone"]
    assert _ledger_states(config) == {SENT: 24}
    assert seen[-1] == (24, 24)
    assert not list(_outbox(config).glob(".*.tmp"))
    data = json.loads((config.path(config.out_dir) / WEEK / "send-report.json").read_text())
    assert (data["sent"], data["exit_code"], data["complete"]) == (24, 0, True)


def test_preferences_pick_the_sections(sample_site: Path) -> None:
    config = _site(sample_site)
    _populate(config, n=3)
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        store.add("mixed@example.com", categories=("Gardening", "Ethics"), now=NOW)
        store.add("nowhere@example.com", categories=("Gardening",), now=NOW)
    report = send_issue(config, now=NOW, week=WEEK)
    assert report.variants == {"all": 1, "Work": 1, "Tools+Research": 1, "Ethics": 1}
    assert report.skipped == 1
    files = _files(config)

    def headings(message: EmailMessage) -> list[str]:
        lines = _text(message).splitlines()
        return [h for h in ALL_SECTIONS if h in lines]

    assert headings(files["reader000@example.com"]) == list(ALL_SECTIONS)
    assert headings(files["reader001@example.com"]) == ["WORK"]
    assert headings(files["reader002@example.com"]) == ["TOOLS", "RESEARCH"]
    assert headings(files["mixed@example.com"]) == ["ETHICS"]
    assert "nowhere@example.com" not in files
    with Ledger(locate(config, config.ledger.database)) as ledger:
        with SubscriberStore(locate(config, config.subscribers.database)) as store:
            nowhere = store.get("nowhere@example.com")
        assert nowhere is not None
        row = ledger.get(WEEK, nowhere.id)
    assert row is not None and row.state == SKIPPED
    assert row.last_error == "no posts in their sections this week"


def test_each_message_carries_its_own_working_unsubscribe_token(sample_site: Path) -> None:
    config = _site(sample_site)
    _populate(config, n=4)
    send_issue(config, now=NOW, week=WEEK)
    files = _files(config)
    store = SubscriberStore(locate(config, config.subscribers.database))

    def key_for(subject: Subject) -> bytes | None:
        found = store.named_by(subject)
        return signing_key(found.secret, token_secret(config)) if found else None

    def address_of(token: str) -> str:
        found = store.named_by(verify_token(token, "unsubscribe", key_for, now=NOW))
        assert found is not None
        return found.email

    tokens: dict[str, str] = {}
    for email, message in files.items():
        header = str(message["List-Unsubscribe"])
        url = header.split(">")[0].lstrip("<")
        assert url.startswith("http://127.0.0.1:8025/unsubscribe/")
        # the sample site has two newsletters: the link names this one, sealed
        token, query = url.rsplit("/", 1)[1].split("?")
        assert query.startswith("newsletter=weekly&seal=")
        assert address_of(token) == email
        assert email not in url and "@" not in url
        html = message.get_body(("html",))
        assert html is not None and url.replace("&", "&amp;") in html.get_content()
        assert "[[digest:" not in html.get_content() + _text(message)
        tokens[email] = token
    assert len(set(tokens.values())) == 4
    # Another reader's signature on this reader's handle is refused.
    ada = tokens["reader000@example.com"].split(".")[:2]
    bob = tokens["reader001@example.com"].split(".")[2:]
    with pytest.raises(TokenError):
        verify_token(".".join(ada + bob), "unsubscribe", key_for, now=NOW)
    found, _ = unsubscribe(
        store, tokens["reader001@example.com"], server=token_secret(config), now=NOW
    )
    assert found.email == "reader001@example.com"
    store.close()
    with SubscriberStore(locate(config, config.subscribers.database)) as store:
        one, zero = store.get("reader001@example.com"), store.get("reader000@example.com")
    assert one is not None and one.status == "unsubscribed"
    assert zero is not None and zero.status == "active"


def test_a_crash_in_the_middle_of_a_group_commit_resumes_exactly(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _site(sample_site, batch_size=10)
    groups = _populate(config, n=30)
    real_replace = outbox_module.os.replace
    renames = {"n": 0}

    def crashing_replace(src: Any, dst: Any) -> None:
        if "/outbox/" in str(dst):
            renames["n"] += 1
            if renames["n"] == 14:  # the 4th file of the second batch
                raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(outbox_module.os, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        send_issue(config, now=NOW, week=WEEK)
    monkeypatch.setattr(outbox_module.os, "replace", real_replace)
    # The first batch is recorded; the second is in flight: 3 files renamed, 7 not.
    assert _ledger_states(config) == {SENT: 10, SENDING: 10, PENDING: 10}
    assert len(list(_outbox(config).glob("*.eml"))) == 13
    assert list(_outbox(config).glob(".*.tmp"))

    report = send_issue(config, now=NOW, week=WEEK)
    assert report.settled_after_crash == {"sent": 3, "not-accepted": 7}
    assert report.sent == 17
    assert _ledger_states(config) == {SENT: 30}
    assert set(_files(config)) == groups["active"]
    assert len(list(_outbox(config).glob("*.eml"))) == 30
    assert not list(_outbox(config).glob(".*.tmp"))


def test_an_exception_from_progress_stops_after_a_recorded_result(sample_site: Path) -> None:
    config = _site(sample_site, batch_size=5)
    _populate(config, n=12)

    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        if done >= 5:
            raise Stop

    with pytest.raises(Stop):
        send_issue(config, now=NOW, week=WEEK, progress=progress)
    # The outbox's batches mix variants (5 readers each): the batch that reached 5 was
    # recorded whole before the error went on.
    assert _ledger_states(config) == {SENT: 5, PENDING: 7}
    report = send_issue(config, now=NOW, week=WEEK)
    assert (report.sent, report.settled_after_crash) == (7, {})
    assert len(list(_outbox(config).glob("*.eml"))) == 12


@pytest.mark.slow  # seconds of work even alone: outside the fast lane
def test_limit_then_resume_then_refuse_then_force(sample_site: Path) -> None:
    config = _site(sample_site, batch_size=4)
    _populate(config, n=15)
    first = send_issue(config, now=NOW, week=WEEK, limit=6)
    assert (first.attempted, first.sent, first.limited, first.complete) == (6, 6, True, False)
    assert len(list(_outbox(config).glob("*.eml"))) == 6
    second = send_issue(config, now=NOW, week=WEEK)
    assert (second.sent, second.queued, second.complete) == (9, 0, True)
    with pytest.raises(NothingToSend, match=r"already sent \(15 sent, completed .*--force"):
        send_issue(config, now=NOW, week=WEEK)
    again = send_issue(config, now=NOW, week=WEEK, force=True)
    assert (again.sent, again.complete) == (15, True)
    with Ledger(locate(config, config.ledger.database)) as ledger:
        attempts = {d.attempts for c in ledger.iter_state(WEEK, [SENT]) for d in c}
        info = ledger.issue(WEEK)
    assert attempts == {1} and info is not None and info["runs"] == 3


class _Refusing(OutboxProvider):
    """The outbox, except that one address is refused for good and one for now."""

    def send(self, batch: Batch) -> Iterator[Event]:
        keep = [r for r in batch.recipients if not r.email.startswith(("reader001", "reader002"))]
        for recipient in batch.recipients:
            if recipient.email.startswith("reader001"):
                yield Result(
                    recipient.subscriber_id, "failed-permanent", reason="550 5.1.1 no such user"
                )
            elif recipient.email.startswith("reader002"):
                yield Result(recipient.subscriber_id, "failed-retryable", reason="421 busy")
        yield from super().send(dataclasses.replace(batch, recipients=tuple(keep)))


def test_a_permanent_failure_gives_exit_1_and_a_refusal_for_now_stays_pending(
    sample_site: Path,
) -> None:
    config = _site(sample_site)
    _populate(config, n=6)
    sleeps: list[float] = []
    with pytest.raises(SendError) as stopped:
        send_issue(
            config,
            now=NOW,
            week=WEEK,
            provider=_Refusing.from_config(config),
            sleep=sleeps.append,
        )
    # the seconds are the real time the tries took (the sleeps are recorded, not slept)
    assert re.fullmatch(
        r"the provider kept refusing for now \(421 busy\) over 10 tries in \d+s; 1 message\(s\) "
        r"stay pending: run the same command later to send them",
        str(stopped.value),
    ), str(stopped.value)
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]  # send.max_attempts
    data = json.loads((config.path(config.out_dir) / WEEK / "send-report.json").read_text())
    assert (data["exit_code"], data["complete"]) == (6, False)
    failures = {f["email"]: f for f in data["failures"]}
    assert failures["reader001@example.com"]["error"] == "550 5.1.1 no such user"
    assert failures["reader001@example.com"]["attempts"] == 1
    assert "reader002@example.com" not in failures  # refused for now: never a failure
    assert _ledger_states(config) == {SENT: 4, FAILED_PERMANENT: 1, PENDING: 1}
    with Ledger(locate(config, config.ledger.database)) as ledger:
        row = ledger.get(WEEK, 3)
    assert row is not None and row.email == "reader002@example.com"
    assert (row.attempts, row.last_error) == (10, "refused for now: 421 busy")
    # the next run, the refusal over, sends it: the issue is complete, exit 1 for the 550
    report = send_issue(config, now=NOW, week=WEEK)
    assert (report.sent, report.complete, report.exit_code) == (1, True, 1)
    assert _ledger_states(config) == {SENT: 5, FAILED_PERMANENT: 1}


@pytest.mark.integration
def test_cli_dry_run_sends_nothing_then_send_and_refusal(sample_site: Path) -> None:
    config = _site(sample_site)
    _populate(config, n=9)
    dry = run_digest("send", "--week", WEEK, "--dry-run", cwd=sample_site)
    assert dry.returncode == 0, dry.stderr
    assert f"{WEEK}: dry run, nothing sent" in dry.stdout
    assert "would send 9 messages via outbox" in dry.stdout
    for line in ("3  Tools+Research", "3  Work", "3  all"):
        assert line in dry.stdout
    assert "e.g. reader000@example.com (every section)" in dry.stdout
    assert not _outbox(config).exists()
    assert _ledger_states(config) == {}

    sent = run_digest("send", "--week", WEEK, "--json", cwd=sample_site)
    assert sent.returncode == 0, sent.stderr
    data = json.loads(sent.stdout)
    assert (data["sent"], data["ledger"]["sent"], data["exit_code"]) == (9, 9, 0)
    status = run_digest("status", "--week", WEEK, "--json", cwd=sample_site)
    assert json.loads(status.stdout)["counts"]["sent"] == 9

    again = run_digest("send", "--week", WEEK, cwd=sample_site)
    assert again.returncode == 5
    assert "already sent (9 sent" in again.stderr and "--force" in again.stderr


class _Concurrent(OutboxProvider):
    """The outbox behind a barrier: three batches must be in the provider at the same time,
    or the barrier breaks and the send fails."""

    default_concurrency = 3
    mixes_variants = False  # one variant per batch, so the batch sizes below are known
    barrier = threading.Barrier(3, timeout=30)
    threads: ClassVar[set[str]] = set()

    def send(self, batch: Batch) -> Iterator[Event]:
        type(self).threads.add(threading.current_thread().name)
        if len(batch.recipients) == 4:  # the three full batches; the last one is smaller
            type(self).barrier.wait()
        yield from super().send(batch)


def test_batches_go_out_concurrently_and_every_result_is_recorded(sample_site: Path) -> None:
    config = _site(sample_site, batch_size=4)
    groups = _populate(config, n=36)  # 12 per variant: three batches of 4 each
    report = send_issue(config, now=NOW, week=WEEK, provider=_Concurrent.from_config(config))
    assert (report.sent, report.exit_code, report.complete) == (36, 0, True)
    assert set(_files(config)) == groups["active"]
    assert _ledger_states(config) == {SENT: 36}
    assert len(_Concurrent.threads) == 3
    assert all(name.startswith("digest-send") for name in _Concurrent.threads)


class _FailingOnce(OutboxProvider):
    """Refuses every request of one variant outright (a provider error), after the other
    batches in flight have been accepted."""

    default_concurrency = 4
    mixes_variants = False  # one variant per batch, as an HTTP API provider gets them

    def send(self, batch: Batch) -> Iterator[Event]:
        if batch.variant == "Work":
            raise ProviderError("emulated", "account suspended", status=403)
        yield from super().send(batch)


def test_a_provider_error_in_one_worker_keeps_the_others_results(sample_site: Path) -> None:
    config = _site(sample_site, batch_size=100)
    _populate(config, n=9)
    with pytest.raises(ProviderError, match="emulated 403: account suspended"):
        send_issue(config, now=NOW, week=WEEK, provider=_FailingOnce.from_config(config))
    states = _ledger_states(config)
    # The two other variants were accepted and recorded; the refused one was not taken,
    # so it is pending again and the next run sends it.
    assert states == {SENT: 6, PENDING: 3}
    assert len(_files(config)) == 6


def test_without_a_secret_every_transport_signs_with_the_one_key_file(
    sample_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _site(sample_site)
    _populate(config, n=2)
    monkeypatch.delenv("DIGEST_SECRET")
    key_file = config.path(config.keys.file)
    assert not key_file.exists()
    report = send_issue(config, now=NOW, week=WEEK, provider=_NamedSmtp.from_config(config))
    assert report.sent == 2
    assert key_file.stat().st_mode & 0o777 == 0o600
    first = key_file.read_bytes()
    assert send_issue(config, now=NOW, week="2026-W46").sent == 2  # the outbox: same key
    assert key_file.read_bytes() == first


class _NamedSmtp(OutboxProvider):
    """Any transport that mails real people (only its name matters here)."""

    name = "smtp-like"
