"""The click group, and what every command shares: config, the clock, errors, --json."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import click

from digest import __version__
from digest.errors import DigestError
from digest.textsafe import for_terminal

if TYPE_CHECKING:
    from digest.config import Config

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = """\b
Exit codes:
  0  done          1  failed (e.g. checks or messages failed)
  2  bad usage     3  config error      4  content error
  5  nothing to send (empty or already sent)
  6  sending stopped  7  store error    8  another run holds the lock
"""


class DigestGroup(click.Group):
    """Turns a DigestError into one line on stderr and its exit code; no traceback.

    Commands can be registered lazily (:attr:`lazy`): name → (short help, loader). The
    loader imports the module that defines the command, which registers it the usual way
    (``@main.command``), so a command's imports are paid only when that command runs and
    ``digest --help`` lists every command without importing any of them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, Callable[[], None]]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.lazy[cmd_name][1]()
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, with the short help of a command not imported yet from :attr:`lazy`."""
        rows = []
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is not None:
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            elif self.lazy[name][0]:  # "" for a hidden command
                rows.append((name, _shorten(self.lazy[name][0], limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            click.secho(for_terminal(f"error: {exc}"), fg="red", err=True)
            if isinstance(ctx.obj, State) and ctx.obj.as_json:
                # scripts read stdout: a failure is JSON there too
                emit_json({"error": str(exc), "exit": exc.exit_code})
            ctx.exit(exc.exit_code)


class State:
    """Per-invocation state: which config file and newsletter, and the config once loaded."""

    def __init__(
        self, config_path: str | None, newsletter: str | None = None, verbose: int = 0
    ) -> None:
        self.config_path = config_path
        self.newsletter = newsletter
        self.verbose = verbose
        self._config: Config | None = None
        self.as_json = False  # set by --json, so errors print JSON on stdout too

    @property
    def whole_config(self) -> Config:
        """The config as written, every newsletter in it."""
        if self._config is None:
            from digest.config import load_config  # the schema costs start-up time

            self._config = load_config(self.config_path)
        return self._config

    @property
    def config(self) -> Config:
        """The config as the chosen newsletter sees it (--newsletter; the first by default)."""
        return self.whole_config.for_newsletter(self.newsletter)


def _set_newsletter(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(State).newsletter = value


def newsletter_option(func: F) -> F:
    """--newsletter NAME on a command (the same as before the command name)."""
    return click.option(
        "--newsletter",
        metavar="NAME",
        expose_value=False,
        callback=_set_newsletter,
        help="Which newsletter of the config [default: the first one].",
    )(func)


def _shorten(text: str, limit: int) -> str:
    """The short help click would make from a command whose help is ``text``."""
    return click.Command(None, help=text).get_short_help_str(limit)


def now() -> datetime:
    """The clock. Commands read it once and pass it down."""
    return datetime.now(timezone.utc)


@click.group(cls=DigestGroup, epilog=EXIT_CODES_HELP)
@click.option(
    "--config",
    "config_path",
    envvar="DIGEST_CONFIG",
    metavar="FILE",
    help="The config file [default: ./config.yaml, or $DIGEST_CONFIG].",
)
@click.option(
    "--newsletter",
    envvar="DIGEST_NEWSLETTER",
    metavar="NAME",
    help="Which newsletter of the config (newsletters:) [default: the first one].",
)
@click.option("-v", "--verbose", count=True, help="Log more (-vv for debug).")
@click.version_option(__version__, prog_name="digest")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, newsletter: str | None, verbose: int) -> None:
    """Weekly newsletter digests from a folder of Markdown posts.

    \b
    Select the week's posts, compose a responsive email, preview it,
    and send it to subscribers exactly once.

    \b
    Examples:
      digest select --week 2026-W34 --explain
      digest build --week 2026-W34
      digest send --week 2026-W34 --dry-run
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(message)s")
    ctx.obj = State(config_path, newsletter, verbose)


pass_state = click.make_pass_decorator(State)


def _parse_day(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date such as 2026-08-17") from None


def window_options(func: F) -> F:
    """--week / --since / --until (and --newsletter), shared by every command that works on
    one issue."""
    func = newsletter_option(func)
    func = click.option(
        "--until", callback=_parse_day, metavar="DATE", help="Last day of the issue (inclusive)."
    )(func)
    func = click.option(
        "--since", callback=_parse_day, metavar="DATE", help="First day of the issue."
    )(func)
    func = click.option(
        "--week",
        metavar="YYYY-Www",
        help="The ISO week of the issue, e.g. 2026-W34 [default: the last complete week].",
    )(func)
    return func


def _note_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    state = ctx.find_object(State)
    if state is not None and value:
        state.as_json = True
    return value


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, callback=_note_json, help="Print JSON for scripts."
    )(func)


def emit_json(data: Any) -> None:
    # json.dumps escapes C0 controls; C1 controls (U+009B is CSI to some terminals), line
    # separators and bidirectional overrides are escaped here too, as \\uXXXX (still JSON).
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    click.echo(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


_JSON_UNSAFE = re.compile("[\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069]")


def say(message: object = "", *, err: bool = False, nl: bool = True, **style: Any) -> None:
    """Print a line that may hold outside text (post and feed titles, names, file names):
    control characters and bidirectional overrides escaped (``\\x1b``), so no escape or
    OSC sequence reaches the terminal raw. ``style`` is click.style's (fg=, bold=)."""
    text = for_terminal(message)
    if style:
        click.secho(text, err=err, nl=nl, **style)
    else:
        click.echo(text, err=err, nl=nl)


def echo_err(message: str) -> None:
    say(message, err=True)


def isatty() -> bool:
    return sys.stdout.isatty()
