"""The Subject as a mail client decodes it equals the subject in the manifest
(email/headers.py), read by Python's ``email`` parser and by the older
``email.header.decode_header`` (a second, separate decoder), for subjects written here and
for every title of the real blog's corpus as an issue's lead; and by a decoder that shares
no code with Python's: Perl's ``Encode::MIME::Header`` (one ``perl`` process for all of
them)."""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
from datetime import datetime, timezone
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from digest.config import parse_config
from digest.content.posts import Post, load_posts
from digest.email.headers import encoded_words
from digest.email.headline import _subject
from digest.email.message import wire_header

CONFIG = parse_config(
    {
        "site": {"name": "AIVibe Weekly", "base_url": "https://aivibe.example.com"},
        "sender": {"from_name": "AIVibe Weekly", "from_email": "weekly@aivibe.example.com"},
    }
)


def _decoded(line: bytes) -> tuple[str, str]:
    """The Subject read by the ``email`` package's parser, and by ``decode_header``."""
    parsed = email.message_from_bytes(line + b"\r\n", policy=email.policy.default)
    raw = line.decode("ascii").split(":", 1)[1].replace("\r\n", "").strip()
    return str(parsed["Subject"]), str(make_header(decode_header(raw)))


@pytest.mark.parametrize(
    "subject",
    [
        "AIVibe Weekly: Claude Code’s auto mode now lets Claude make its own approvals",
        "AIVibe Weekly: Apple’s  double  spaces kept",
        "Tom & Jerry 🎉 שלום עולם — and 3 more",
        "AIVibe Weekly: 1.1M insurance customers were exposed in a data breach…",
        "é" * 200,
    ],
)
def test_a_non_ascii_subject_decodes_to_itself_in_both_parsers(subject: str) -> None:
    line = wire_header("Subject", subject)
    assert _decoded(line) == (subject, subject)
    assert all(len(part) <= 78 for part in line.split(b"\r\n"))


def test_encoded_words_are_cut_between_characters_and_under_75() -> None:
    words = encoded_words("Code’s " * 20).split("\r\n ")
    assert len(words) > 2
    assert all(w.startswith("=?utf-8?q?") and w.endswith("?=") and len(w) <= 75 for w in words)
    assert words[0] == "=?utf-8?q?Code=E2=80=99s_Code=E2=80=99s_Code=E2=80=99s_Code?="


def test_to_message_writes_the_same_subject_line() -> None:
    from digest.email.compose import compose
    from digest.email.message import to_message
    from tests.test_compose import _config, _post, _selection

    title = "Claude Code’s auto mode now lets Claude make its own approvals"
    composed = compose(_config(), _selection(("Work", [_post("a", title)])), now=NOW)
    message = to_message(composed, to="r@example.com", values={})
    data = message.as_bytes(policy=email.policy.SMTP)
    start = data.index(b"Subject: ")
    end = data.index(b"\r\n", start)
    while data[end + 2 : end + 3] == b" ":
        end = data.index(b"\r\n", end + 2)
    assert data[start:end] + b"\r\n" == wire_header("Subject", composed.subject)
    assert _decoded(data[start:end]) == (composed.subject, composed.subject)


NOW = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)
PERL_DECODER = (
    "use Encode; binmode STDOUT, ':encoding(UTF-8)'; "
    "while (my $line = <STDIN>) { chomp $line; print decode('MIME-Header', $line), qq(\\n); }"
)


def _perl_decoded(subjects: list[str]) -> list[str]:
    """Each subject's wire header, unfolded, as Perl's Encode::MIME::Header decodes it."""
    perl = shutil.which("perl")
    if perl is None:
        pytest.skip("perl is not installed: the third decoder is Perl's Encode::MIME::Header")
    values = [
        wire_header("Subject", s).decode("ascii").split(":", 1)[1].replace("\r\n", "").strip()
        for s in subjects
    ]
    done = subprocess.run(
        [perl, "-e", PERL_DECODER],
        input="".join(f"{v}\n" for v in values).encode("ascii"),
        capture_output=True,
        check=True,
    )
    return done.stdout.decode("utf-8").split("\n")[:-1]


@pytest.mark.integration
def test_perl_decodes_the_subjects_to_themselves() -> None:
    subjects = [
        "AIVibe Weekly: Claude Code’s auto mode now lets Claude make its own approvals",
        "Tom & Jerry 🎉 שלום עולם — and 3 more",
        "é" * 200,
        "AIVibe Weekly: plain ASCII stays as it is",
    ]
    assert _perl_decoded(subjects) == subjects


@pytest.mark.corpus
@pytest.mark.slow
def test_every_corpus_title_as_the_lead_round_trips(corpus_dir: Path) -> None:
    posts = load_posts(corpus_dir, timezone.utc).posts  # type: ignore[arg-type]
    other = Post(Path("b.md"), "b", "B", NOW)
    differences: list[tuple[str, str, str]] = []
    cut = 0
    for post in posts:
        subject = _subject(CONFIG, [post, other], "2026-W30", None)
        whole = " ".join(post.title.split()) in subject  # or the short form, no title
        cut += not (whole or subject == "AIVibe Weekly: 2 stories this week")
        email_parser, second = _decoded(wire_header("Subject", subject))
        if (email_parser, second) != (subject, subject):
            differences.append((subject, email_parser, second))
    print(f"{len(posts)} titles as the lead: {len(differences)} differences, {cut} cut")
    assert len(posts) == 12763
    assert differences == []
    assert cut == 0


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.integration
def test_every_corpus_title_as_the_lead_round_trips_through_perl(corpus_dir: Path) -> None:
    posts = load_posts(corpus_dir, timezone.utc).posts  # type: ignore[arg-type]
    other = Post(Path("b.md"), "b", "B", NOW)
    subjects = [_subject(CONFIG, [post, other], "2026-W30", None) for post in posts]
    decoded = _perl_decoded(subjects)
    differences = [(s, d) for s, d in zip(subjects, decoded, strict=True) if s != d]
    print(f"{len(subjects)} subjects through Perl: {len(differences)} differences")
    assert len(subjects) == 12763
    assert differences[:5] == []
