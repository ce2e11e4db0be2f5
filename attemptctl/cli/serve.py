"""`serve`: every registered prompt behind one frozen backbone, over HTTP (the ``serve`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from attemptctl.cli.app import app, call, err, out, workspace
from attemptctl.cli.options import BackboneOpt, DeviceOpt, PrecisionOpt, RegistryOpt

HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on; the default answers this machine only "
                                      "(there is no authentication: keep it local or behind a proxy).")]
PortOpt = Annotated[int, typer.Option("--port", help="TCP port (0: a free one, named in the ready line).")]
MaxBatchOpt = Annotated[int, typer.Option("--max-batch", help="Rows one forward pass may hold, across prompts.")]
MaxWaitOpt = Annotated[float, typer.Option("--max-wait-ms", help="How long a request may wait for others to join "
                                           "its batch.")]


@app.command("serve")
def serve_command(
    registry: RegistryOpt = None, backbone: BackboneOpt = None, host: HostOpt = "127.0.0.1", port: PortOpt = 8000,
    max_batch: MaxBatchOpt = 32, max_wait_ms: MaxWaitOpt = 5.0, device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
) -> None:
    """Serve every registered prompt over HTTP from one frozen backbone; requests for different prompts share
    each forward pass. The registry is only read; POST /v1/reload picks up new prompts. Ctrl-C stops.

    Example: attemptctl serve --port 8000
             curl -s localhost:8000/v1/predict --json '{"prompt": "sst2", "inputs": [{"sentence": "a witty film"}]}'
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        err.print("error: attemptctl serve needs FastAPI and uvicorn: pip install 'attemptctl[serve]'", highlight=False,
                  markup=False, soft_wrap=True)
        raise typer.Exit(1)
    from attemptctl.serving.server import ServeConfig, serve
    from attemptctl.serving.service import BatchConfig

    config = call(lambda: ServeConfig(host=host, port=port, batch=BatchConfig(max_batch, max_wait_ms)))
    if not config.local:
        err.print(f"[yellow]warning:[/] listening on {host}: there is no authentication; anyone who reaches this "
                  "address can use every prompt. Keep it on localhost or behind a proxy.", highlight=False)

    def ready(service, host: str, port: int) -> None:
        where = f"[{host}]" if ":" in host else host
        out.print(f"serving {len(service.catalog)} prompts on {service.backbone.name} at http://{where}:{port} "
                  f"(API docs: /docs); Ctrl-C stops", highlight=False, soft_wrap=True)
        out.file.flush()

    call(serve, workspace(registry, None, backbone, device=device, precision=precision), config, on_ready=ready)
    out.print("stopped", highlight=False)
