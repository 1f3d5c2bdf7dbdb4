"""`camloc serve` as a user starts it: a subprocess on a checkpoint, bound to localhost, answering, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from camloc.io import save_checkpoint
from camloc.models.gapnet import GapNet

httpx = pytest.importorskip("httpx2", reason="the 'serve' extra is not installed")
pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = GapNet(num_classes=3, widths=(8, 16, 16, 16))
    labels = ["red", "green", "blue"]
    config = {"architecture": "gapnet", "arch_kwargs": {"num_classes": 3, "widths": [8, 16, 16, 16]}}
    save_checkpoint(tmp_path / "net", net.state_dict(), {**config, "labels": labels, "name": "rgb-net"})
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "camloc", "serve", "--model", str(tmp_path / "net"), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "camloc serve did not start"
                time.sleep(0.2)
        models = httpx.get(f"{url}/api/models").json()
        assert models["models"][0]["name"] == "rgb-net" and models["models"][0]["num_classes"] == 3
        assert models["limits"]["max_batch"] == 1  # no batching on a CPU by default
        assert httpx.get(f"{url}/api/labels").json()["labels"] == labels
        photo = (ROOT / "examples" / "rocket.jpg").read_bytes()
        r = httpx.post(f"{url}/api/explain", files={"files": ("rocket.jpg", photo)}, data={"top_k": "3"}, timeout=60)
        assert r.status_code == 200
        assert sorted(p["label"] for p in r.json()["results"][0]["predictions"]) == sorted(labels)
        # bound to the loopback address only (Linux's table of listening IPv4 sockets)
        listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        local = [row[1] for row in listening if row[3] == "0A" and int(row[1].split(":")[1], 16) == port]
        assert local == ["0100007F:" + f"{port:04X}"]  # 127.0.0.1, not 0.0.0.0
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "camloc: serving rgb-net on cpu" in err
