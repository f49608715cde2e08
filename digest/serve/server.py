"""Running the app under uvicorn: the listening socket, the file-descriptor limit, and the
connection limits (:class:`~digest.serve.protocol.Limits`) ``digest serve`` starts with."""

from __future__ import annotations

import logging
import resource
import socket
from collections.abc import Callable

import uvicorn

from digest.config import Config
from digest.serve.app import NextIssue, create_app
from digest.serve.protocol import Limits, guarded_protocol

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (``getsockname()`` says which)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(Limits.listen_backlog)  # the kernel caps it at net.core.somaxconn
    sock.set_inheritable(True)
    return sock


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit (where the system
    allows it), log the limit in force and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65_536) if soft != resource.RLIM_INFINITY else soft
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %s to %s: %s", soft, hard, exc)
    if soft != before:
        log.info("open-file limit raised from %s to %s (the hard limit)", before, soft)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def limits_for(config: Config) -> Limits:
    """The connection limits ``serve:`` in config.yaml asks for."""
    return Limits(
        max_per_client=config.serve.max_connections_per_client,
        exempt=tuple(config.serve.trusted_proxies),
    )


def defer_accept(sock: socket.socket, seconds: float) -> None:
    """On Linux, have the kernel hand over a connection only once its client has sent
    something (TCP_DEFER_ACCEPT), for up to ``seconds``: a connection opened and left idle
    costs the service no descriptor, no accept and no timer until then, and every HTTP
    client sends its request at once. Elsewhere nothing changes."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds)))
    except OSError as exc:
        log.warning("cannot set TCP_DEFER_ACCEPT on the listening socket: %s", exc)


def server_config(config: Config, app: object, limits: Limits) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` within ``limits``."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=guarded_protocol(limits),
        log_level="warning",
        # uvicorn's own lines go through the root logger too, so digest serve's safe,
        # rate-limited formatting (digest.safelog) applies to them as well
        log_config=None,
        access_log=False,  # request lines hold tokens; state changes are logged instead
        proxy_headers=bool(config.serve.trusted_proxies),
        forwarded_allow_ips=",".join(config.serve.trusted_proxies) or None,
        server_header=False,
        lifespan="on",
        ws="none",
        timeout_keep_alive=int(limits.keep_alive),
        # connections are capped by the protocol (it closes idle ones first); this bounds
        # requests in flight, with room for every open connection to have one
        limit_concurrency=limits.max_connections + limits.max_requests_in_flight,
        h11_max_incomplete_event_size=limits.max_head_bytes,
        timeout_graceful_shutdown=int(limits.graceful_shutdown),
        # asyncio takes this many connections from the kernel per wake-up and also makes it
        # the socket's listen backlog; serve() sets the kernel's queue back afterwards
        backlog=limits.accept_batch,
    )


def serve(
    config: Config,
    sock: socket.socket,
    *,
    on_ready: Callable[[str], None] | None = None,
    next_issue: NextIssue | None = None,
    limits: Limits | None = None,
) -> None:
    """Run the service on ``sock`` until interrupted (SIGINT/SIGTERM end it cleanly)."""
    app = create_app(config, next_issue=next_issue)
    fitted = (limits or limits_for(config)).fitted(raise_open_files())
    defer_accept(sock, fitted.head_timeout)
    host, port = sock.getsockname()[:2]
    public = config.serve.public_url or ""
    if public.startswith("https://") and not config.serve.trusted_proxies:
        log.warning(
            "serve.public_url is https but serve.trusted_proxies is empty: behind a reverse "
            "proxy every client looks like the proxy, and they share one rate limit; list the "
            "proxy's address there (see docs/serve.md)"
        )
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    log.info(
        "at most %s open connections (%s per client address), a request head within %s s, "
        "a body within %s s",
        fitted.max_connections,
        fitted.max_per_client,
        fitted.head_timeout,
        fitted.body_timeout,
    )
    server = uvicorn.Server(server_config(config, app, fitted))
    original = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original(sockets=sockets)
        sock.listen(fitted.listen_backlog)  # the kernel's queue, not asyncio's accept batch
        if on_ready is not None:
            on_ready(url)

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
