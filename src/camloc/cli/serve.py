"""`camloc serve`: the browser page and JSON API over `camloc.explain` (FastAPI + uvicorn, the `serve` extra)."""

from __future__ import annotations

import argparse
import sys

from camloc.io import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `camloc serve`, its options and help, on the subcommand parser `sub`."""
    p = sub.add_parser(
        "serve",
        help="explain images in the browser: a page and a JSON API",
        description="Serve a page (and a JSON API, POST /api/explain) that explains uploaded images. The models "
        "load once at start. Binds to localhost unless --host says otherwise.",
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="'default', a checkpoint folder, or an architecture name; repeat to serve several (the first is the "
        "page's default)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body (default 20 MB)")
    p.add_argument("--max-files", type=int, default=16, help="images per request (default 16)")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="pixels per image (default 25,000,000)")
    p.add_argument("--queue", type=int, default=64, help="requests waiting or running before 503 (default 64)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="images per explain call, batching waiting requests; 1 turns batching off (default: 16 on a GPU, 1 on "
        "a CPU, where make bench-serve measured no gain from it)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a request may wait for its answer")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the model and serve the page and the JSON API with uvicorn until stopped; 0."""
    try:
        import uvicorn

        from camloc.serve import ServeConfig, create_app
    except ImportError as exc:
        raise InputError(f"camloc serve needs the 'serve' extra: pip install 'camloc[serve]' ({exc})") from None
    import torch

    from camloc.distributed import pick_device
    from camloc.models.zoo import load

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.max_batch is None:
        args.max_batch = 16 if device.type == "cuda" else 1
    for name, value in (("--max-files", args.max_files), ("--queue", args.queue), ("--max-batch", args.max_batch)):
        if value < 1:
            raise InputError(f"{name} must be at least 1")
    models = [load(spec).to(device) for spec in (args.model or ["default"])]
    config = ServeConfig(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_files=args.max_files,
        max_pixels=args.max_pixels,
        max_queue=args.queue,
        max_batch=args.max_batch,
        timeout_s=args.timeout,
    )
    app = create_app(models, config)
    print(
        f"camloc: serving {', '.join(app.state.models)} on {device} at http://{args.host}:{args.port}/", file=sys.stderr
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
