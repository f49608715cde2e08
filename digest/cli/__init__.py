"""The ``digest`` command line. Each command module registers its commands on :data:`main`.

Command modules are imported only when one of their commands runs (or ``--help`` of that
command is asked for): ``digest select`` never pays for the email stack, the web server or
a provider's SDK. The short help of each command is listed here so that ``digest --help``
imports none of them; tests/test_cli_imports.py checks it matches each command's own.
"""

from __future__ import annotations

from digest.cli._app import main


def _build() -> None:
    from digest.cli import build  # noqa: F401  (importing a module registers its commands)


def _config() -> None:
    from digest.cli import configcmd  # noqa: F401


def _content() -> None:
    from digest.cli import content  # noqa: F401


def _db() -> None:
    from digest.cli import db  # noqa: F401


def _init() -> None:
    from digest.cli import init  # noqa: F401


def _keys() -> None:
    from digest.cli import keys  # noqa: F401


def _outbox() -> None:
    from digest.cli import outbox  # noqa: F401


def _preview() -> None:
    from digest.cli import preview  # noqa: F401


def _report() -> None:
    from digest.cli import report  # noqa: F401


def _schedule() -> None:
    from digest.cli import schedule  # noqa: F401


def _send() -> None:
    from digest.cli import send  # noqa: F401


def _serve() -> None:
    from digest.cli import serve  # noqa: F401


def _subscribers() -> None:
    from digest.cli import subscribers  # noqa: F401


def _suppressions() -> None:
    from digest.cli import suppressions  # noqa: F401


# name → (the first paragraph of the command's help, "" for a hidden one; its module's loader)
main.lazy.update(
    {
        "build": (
            "Compose the issue's email, check it, and write it to out/<issue-id>/.",
            _build,
        ),
        "check": (
            "Validate config.yaml and every post; exit non-zero if anything is wrong.",
            _content,
        ),
        "config": (
            "Show the configuration: its reference, or what a config file resolves to.",
            _config,
        ),
        "db": ("The stores: schema versions, upgrades, and moving to PostgreSQL.", _db),
        "init": ("Write a first config.yaml from the posts: sections, timezone, sender.", _init),
        "keys": ("The key that signs unsubscribe and preference links.", _keys),
        "outbox": ("The outbox provider's message files.", _outbox),
        "preview": (
            "Preview the issue in a browser; it rebuilds and reloads when you save.",
            _preview,
        ),
        "report": (
            "Show clicks per post, per section and per issue, with delivery outcomes.",
            _report,
        ),
        "run": (
            "Send the issue that is due now, if any. Safe to call at any time, as often as "
            "you like.",
            _schedule,
        ),
        "schedule": (
            "Run digest on its schedule: `digest schedule` alone is the long-running scheduler.",
            _schedule,
        ),
        "select": ("Show which posts make the issue, grouped by section.", _content),
        "send": ("Send the issue to every active subscriber, exactly once.", _send),
        "serve": (
            "Run the subscribe, confirm, unsubscribe, preferences, archive and webhook routes.",
            _serve,
        ),
        "status": ("Show the send ledger's counts for an issue.", _send),
        "subscribers": (
            "Manage the subscriber store (subscribers.database in config).",
            _subscribers,
        ),
        "suppressions": ("Addresses the email provider will not send to.", _suppressions),
        "unsubscribe": ("", _subscribers),  # hidden: an alias kept for scripts
    }
)

__all__ = ["main"]
