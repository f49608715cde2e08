"""A local web preview of an issue that rebuilds itself when its files change.

The preview receives a ``builder`` (``issue_id -> Render``) and knows nothing else about
building: :mod:`digest.preview.site` makes one from ``digest build`` for a real site, and
tests hand it a stand-in. The pieces:

- :mod:`~digest.preview.state`: the last good render of each issue, the latest problem, and
  a worker thread that rebuilds when asked;
- :mod:`~digest.preview.watch`: a watchfiles thread that asks for those rebuilds;
- :mod:`~digest.preview.server`: the Starlette app (page, email, state, event stream) and
  uvicorn on a socket bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from digest.preview.server import (
    ArchiveReader,
    PreviewOptions,
    TestSender,
    WeekChoice,
    WeekLister,
    bind_socket,
    create_app,
    local_hosts,
    serve,
)
from digest.preview.state import Builder, Check, PreviewState, Problem, Render
from digest.preview.watch import Watcher, WatchSet

__all__ = [
    "Builder",
    "Check",
    "PreviewState",
    "Problem",
    "Render",
    "WatchSet",
    "WeekChoice",
    "run_preview",
]

log = logging.getLogger(__name__)


def run_preview(
    builder: Builder,
    *,
    issue_id: str,
    host: str = "127.0.0.1",
    port: int = 0,
    watch_set: Callable[[], WatchSet] | None = None,
    weeks: WeekLister | None = None,
    archive: ArchiveReader | None = None,
    send_test: TestSender | None = None,
    site_name: str = "digest",
    dashboard: Callable[[], str] | None = None,
    deliverability: Callable[[str], str] | None = None,
    any_host: bool = False,
    on_ready: Callable[[str, PreviewState], None] | None = None,
    on_rebuild: Callable[[Sequence[str]], None] | None = None,
    stop: threading.Event | None = None,
    force_polling: bool | None = None,
) -> PreviewState:
    """Build ``issue_id``, serve the preview and rebuild on change until Ctrl-C or ``stop``.

    ``on_ready(url, state)`` is called once the server accepts connections; the first build
    has run by then, so ``state.view(issue_id)`` is instant. ``any_host`` turns off the Host
    check (for a deliberate ``--host`` other than loopback).
    """
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}/"

    state = PreviewState(builder)
    state.build(issue_id)
    options = PreviewOptions(
        default_issue=issue_id,
        weeks=weeks,
        archive=archive,
        send_test=send_test,
        allowed_hosts=None if any_host else local_hosts(shown_host, bound_port),
        site_name=site_name,
        dashboard=dashboard,
        deliverability=deliverability,
    )
    app = create_app(state, options)

    def changed(paths: Sequence[str]) -> None:
        if on_rebuild is not None:
            on_rebuild(paths)
        state.request_rebuild(paths)

    watcher = Watcher(watch_set, changed, force_polling=force_polling) if watch_set else None
    state.start()
    if watcher is not None:
        watcher.start()
    try:
        serve(
            app,
            sock,
            on_ready=(lambda: on_ready(url, state)) if on_ready else None,
            stop=stop,
        )
    finally:
        if watcher is not None:
            watcher.stop()
        state.stop()
        sock.close()
    return state
