"""Load test of `camloc serve` on this machine (`make bench-serve`): C concurrent clients x R requests each.

Two servers are started side by side, one per setting (`--max-batch 1`: every request explained alone;
`--max-batch 16`: requests waiting together share one `camloc.explain` call), each `camloc serve` on a free
localhost port, warmed up. The settings then take turns in rounds, in alternating order, so that other load on the
machine hits both alike; in each round the C clients (httpx2, asyncio) post one example photo per request and wait
for the answer. Reported per setting: errors (any status other than 200), latency p50 / p95 / max, requests/s
(requests over the time the rounds took), the server's time inside explain (its share of that time: the model's
share of the serving cost), images per explain call, and the server's resident memory after warm-up, after half
the rounds and at the end, with the peak (flat = no leak).

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run_load(url: str, pid: int, files: list[tuple[str, bytes]], form: dict, clients: int, requests: int):
    """`clients` concurrent clients x `requests` each: (latencies, statuses, RSS samples, wall seconds)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    memory: list[float] = []
    done = 0
    total = clients * requests

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal done
        for r in range(requests):
            name, data = files[(c + r) % len(files)]
            t0 = time.perf_counter()
            resp = await http.post(f"{url}/api/explain", files={"files": (name, data, "image/jpeg")}, data=form)
            latencies.append(time.perf_counter() - t0)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            done += 1

    async def sampler() -> None:
        while done < total:
            memory.append(rss_mb(pid))
            await asyncio.sleep(0.25)
        memory.append(rss_mb(pid))

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=900, limits=limits) as http:
        t0 = time.perf_counter()
        watch = asyncio.create_task(sampler())
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        wall = time.perf_counter() - t0
        await watch
    return latencies, statuses, memory, wall


class Server:
    """`camloc serve` in a subprocess on a free localhost port, warmed up (every example shape once)."""

    def __init__(self, args: argparse.Namespace, max_batch: int, files: list[tuple[str, bytes]], form: dict) -> None:
        self.max_batch = max_batch
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "camloc", "serve", "--port", str(port), "--max-batch", str(max_batch)]
        cmd += ["--queue", str(args.clients + 8), "--timeout", "600", "--model", args.model]
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"camloc serve exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("camloc serve did not answer within 180 s")
            time.sleep(0.3)
        for name, data in files:
            r = httpx.post(f"{self.url}/api/explain", files={"files": (name, data)}, data=form, timeout=600)
            r.raise_for_status()
        self.warm_health = self.health()
        self.rss = [rss_mb(self.proc.pid)]  # after warm-up, then after each round
        self.peak = self.rss[0]
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.wall = 0.0

    def health(self) -> dict:
        return httpx.get(f"{self.url}/api/health", timeout=30).json()

    def round(self, files: list[tuple[str, bytes]], form: dict, clients: int, requests: int) -> None:
        lat, st, mem, wall = asyncio.run(run_load(self.url, self.proc.pid, files, form, clients, requests))
        self.latencies += lat
        for k, v in st.items():
            self.statuses[k] = self.statuses.get(k, 0) + v
        self.wall += wall
        self.peak = max([self.peak, *mem])
        self.rss.append(rss_mb(self.proc.pid))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def row(self) -> dict:
        end = self.health()
        n = len(self.latencies)
        calls = end["explain_calls"] - self.warm_health["explain_calls"]
        images = end["images"] - self.warm_health["images"]
        return {
            "max_batch": self.max_batch,
            "requests": n,
            "errors": n - self.statuses.get(200, 0),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_s": statistics.median(self.latencies),
            "p95_s": percentile(self.latencies, 0.95),
            "max_s": max(self.latencies),
            "requests_per_s": n / self.wall,
            "wall_s": self.wall,
            "explain_calls": calls,
            "images_per_call": images / max(calls, 1),
            "explain_share": (end["explain_seconds"] - self.warm_health["explain_seconds"]) / self.wall,
            "rss_mb_after_warmup": self.rss[0],
            "rss_mb_at_half": self.rss[len(self.rss) // 2],
            "rss_mb_end": self.rss[-1],
            "rss_mb_per_round": self.rss,
            "rss_mb_peak": self.peak,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--rounds", type=int, default=5, help="the settings take turns in this many rounds")
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--map-sizes", default="native", help="the map_sizes option of each request ('' for the server's default, 640)"
    )
    parser.add_argument("--max-batch", default="1,16", help="server settings to compare")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    if args.requests % args.rounds:
        parser.error("--requests must be a multiple of --rounds")
    files = [(p.name, p.read_bytes()) for p in sorted((ROOT / "examples").glob("*.jpg"))]
    form = {"top_k": "5", **({"map_sizes": args.map_sizes} if args.map_sizes else {})}
    servers: list[Server] = []
    try:
        for b in args.max_batch.split(","):
            servers.append(Server(args, int(b), files, form))  # noqa: PERF401 - those started are stopped below
        for r in range(args.rounds):  # alternating order: drift in the machine's load hits every setting alike
            for server in servers if r % 2 == 0 else servers[::-1]:
                server.round(files, form, args.clients, args.requests // args.rounds)
        rows = [server.row() for server in servers]
    finally:
        for server in servers:
            server.stop()
    per_round = args.requests // args.rounds
    print(
        f"# camloc serve: {args.clients} clients x {args.requests} requests, top-5, map_sizes={args.map_sizes or 'default'}"
    )
    print(
        f"# examples/*.jpg in turn; {args.rounds} rounds of {args.clients} x {per_round} per setting, the settings "
        f"taking turns; {os.cpu_count()} CPU cores; python {sys.version.split()[0]}\n"
    )
    print(
        "| --max-batch | requests | errors | p50 s | p95 s | max s | req/s | images/explain call | time in explain "
        "| RSS MiB warm / half / end (peak) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['max_batch']} | {r['requests']} | {r['errors']} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | "
            f"{r['max_s']:.2f} | {r['requests_per_s']:.2f} | {r['images_per_call']:.1f} | {r['explain_share']:.0%} | "
            f"{r['rss_mb_after_warmup']:.0f} / {r['rss_mb_at_half']:.0f} / {r['rss_mb_end']:.0f} ({r['rss_mb_peak']:.0f}) |"
        )
    if len(rows) > 1:
        print(f"\nthroughput, batching on vs off: {rows[-1]['requests_per_s'] / rows[0]['requests_per_s']:.2f}x")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"clients": args.clients, "requests": args.requests, "rows": rows}, indent=2))
    if any(r["errors"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
