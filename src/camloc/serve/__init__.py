"""`camloc serve`: the web app (FastAPI) and its inference queue. Needs the `serve` extra."""

from camloc.serve.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
