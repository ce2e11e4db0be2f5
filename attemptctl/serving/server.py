"""``serve``: load the backbone once, open the registry read-only, and answer HTTP until Ctrl-C or SIGTERM.

The socket is bound before uvicorn starts, so a port in use is one error line and ``--port 0`` picks a
free port (the ready line names it). On a signal, uvicorn stops accepting, the requests in flight are
answered (the batcher drains), and ``serve`` returns: the command exits 0.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from attemptctl.errors import ConfigError
from attemptctl.serving.service import BatchConfig, Service
from attemptctl.workflows.workspace import Workspace
from registry import Registry

GRACEFUL_SECONDS = 30
"""How long a stopping server waits for the requests in flight."""


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens and how it batches."""

    host: str = "127.0.0.1"
    """Address to bind; the default answers this machine only (there is no authentication)."""
    port: int = 8000
    """TCP port; 0 picks a free one."""
    batch: BatchConfig = field(default_factory=BatchConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {self.port}")

    @property
    def local(self) -> bool:
        """Whether only this machine can reach the address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def open_service(ws: Workspace, batch: BatchConfig | None = None) -> Service:
    """The backbone (``--backbone``, else the registry's) and every prompt it can serve, registry read-only."""
    from attemptctl.serving.prompts import PromptCatalog

    registry = Registry(ws.registry_path, read_only=True)
    backbone = ws.load_backbone(ws.backbone_spec(registry))
    return Service(backbone, PromptCatalog(registry, backbone), batch or BatchConfig())


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one error line (address in use, unknown host)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(ws: Workspace, config: ServeConfig, *, on_ready: Callable[[Service, str, int], None] | None = None) -> None:
    """Serve until interrupted; ``on_ready(service, host, port)`` once the socket listens."""
    import uvicorn

    from attemptctl.serving.api import create_app

    sock = listen(config.host, config.port)
    service = None
    try:
        service = open_service(ws, config.batch)
        server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=GRACEFUL_SECONDS, lifespan="on"))
        if on_ready is not None:
            on_ready(service, config.host, sock.getsockname()[1])
        with _signals_end_quietly():
            server.run(sockets=[sock])
    finally:
        if service is not None:
            service.close()
        sock.close()


@contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """While uvicorn runs, Ctrl-C and SIGTERM only ask it to stop (it handles them itself); afterwards
    uvicorn raises the signal again for the handler before it, which would kill the process. Here that
    second delivery does nothing: the server has stopped cleanly, and ``serve`` returns."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
