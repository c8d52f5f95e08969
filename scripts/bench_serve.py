#!/usr/bin/env python3
"""Serving benchmark: requests/s and p50/p99 latency of four ways to answer HTTP-sized requests.

    python scripts/bench_serve.py                       # the full run (docs/benchmarks.md)
    python scripts/bench_serve.py --clients 1 2 --requests 8 --process-requests 2   # a quick check

Every request carries one MTS-Dialog validation dialogue; N clients (1, 8, 32) send
requests back to back over keep-alive connections. The ways:

- naive:    a FastAPI endpoint (sync ``def``, FastAPI's thread pool) calling a
            ``transformers.pipeline("text-classification")`` per request, the model loaded once
            (the clintune model's own weights, handed to ``pipeline`` as a model object, because
            ``pipeline(path)`` refuses a mean-pooled folder);
- process:  one ``clintune predict --text`` process per request (no server: what a script calling
            the CLI pays, start-up included);
- serve:    ``clintune serve`` on the PyTorch folder;
- serve-int8: ``clintune serve`` on its ONNX int8 export;
- ceiling:  no server and no clients: the same texts handed to clintune's ``Predictor.classify``
            on the PyTorch folder in one call, in a process of their own (sorted by length,
            batches of 8): what this CPU computes with PyTorch at best, so what any server's
            requests/s can reach. Its "× naive" column is against each client count's naive run.

Each server runs in its own process with the machine's default threads; clients are threads of
this process. Prints a markdown table and writes it with the raw numbers under --out.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench-quality-3"  # scripts/bench_quality.py's models: mts-clintune and its int8 export


# -- the naive endpoint (runs in its own process: --naive-server) ------------------------------------


def naive_server(model_dir: str, port: int) -> None:
    """The endpoint a notebook user writes first: load a pipeline once, call it per request."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from clintune.inference.predictor import Predictor

    hf_logging.set_verbosity_error()
    loaded = Predictor.from_folder(model_dir)  # the folder's weights; pipeline(path) refuses a mean-pooled head
    classifier = pipeline("text-classification", model=loaded.model, tokenizer=loaded.tokenizer, device="cpu")
    max_length = loaded.config.model.max_length
    app = FastAPI()

    class Texts(BaseModel):
        texts: list[str]

    def predict(request: Texts) -> list[dict[str, Any]]:
        return [classifier(text, truncation=True, max_length=max_length)[0] for text in request.texts]

    predict.__annotations__ = {"request": Texts, "return": list}  # a local class: resolve it here, not by name
    app.post("/v1/predict")(predict)

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    print(f"listening on http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def ceiling_run(model_dir: str, data: str, count: int) -> None:
    """Print the seconds ``Predictor.classify`` takes for the ``count`` texts the clients would send, in one call."""
    import pandas as pd

    from clintune.inference.predictor import Predictor

    texts = list(pd.read_csv(data).dialogue)
    chosen = [texts[i % len(texts)] for i in range(count)]
    predictor = Predictor.from_folder(model_dir)
    predictor.classify(chosen[:16])  # warm-up, untimed
    started = time.perf_counter()
    predictor.classify(chosen)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def ceiling(args: argparse.Namespace) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--ceiling-run", str(args.model), "--data", str(args.data),
                           "--requests", str(args.requests)], cwd=ROOT, capture_output=True, text=True, check=True)
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return {"kind": "ceiling", "clients": 0, "requests": args.requests, "seconds": seconds,
            "requests_per_second": args.requests / seconds, "p50_ms": float("nan"), "p99_ms": float("nan")}


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(kind: str, args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    """Start a server process and wait until it answers /readyz; (process, port)."""
    port = free_port()
    if kind == "naive":
        command = [sys.executable, __file__, "--naive-server", str(args.model), "--port", str(port)]
    else:
        folder = args.model if kind == "serve" else args.int8_model
        command = [sys.executable, "-m", "clintune", "serve", "--model", str(folder), "--port", str(port),
                   *args.serve_option]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{kind}: the server exited with {process.returncode}: {' '.join(command)}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{kind}: not ready after 300 s")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


# -- clients -----------------------------------------------------------------------------------


def http_client(port: int, texts: list[str], count: int, start: int) -> list[tuple[float, str]]:
    """``count`` requests back to back on one keep-alive connection: (latency, label) each."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    results = []
    for i in range(count):
        body = json.dumps({"texts": [texts[(start + i) % len(texts)]]})
        started = time.perf_counter()
        connection.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        latency = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        results.append((latency, json.loads(payload)[0]["label"]))
    return results


def process_client(model: Path, texts: list[str], count: int, start: int) -> list[tuple[float, str]]:
    results = []
    for i in range(count):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "clintune", "predict", "--model", str(model), "--json",
                               "--text", texts[(start + i) % len(texts)]], cwd=ROOT, capture_output=True, text=True)
        latency = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-500:])
        results.append((latency, json.loads(done.stdout)[0]["label"]))
    return results


def measure(kind: str, clients: int, total: int, texts: list[str], args: argparse.Namespace, port: int | None) -> dict[str, Any]:
    per_client = max(1, total // clients)
    if port is not None:  # warm-up: every client connection once, untimed
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda c: http_client(port, texts, 1, c), range(clients)))
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        if port is None:
            runs = list(pool.map(lambda c: process_client(args.model, texts, per_client, c * per_client), range(clients)))
        else:
            runs = list(pool.map(lambda c: http_client(port, texts, per_client, c * per_client), range(clients)))
    seconds = time.perf_counter() - started
    latencies = sorted(latency for run in runs for latency, _ in run)
    return {"kind": kind, "clients": clients, "requests": len(latencies), "seconds": seconds,
            "requests_per_second": len(latencies) / seconds, "p50_ms": 1000 * percentile(latencies, 50),
            "p99_ms": 1000 * percentile(latencies, 99)}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return float("nan")
    rank = max(1, min(len(values), round(q / 100 * len(values) + 0.5)))
    return values[rank - 1]


# -- report -----------------------------------------------------------------------------------


NAMES = {"naive": "naive FastAPI + pipeline()", "process": "`clintune predict --text` per request",
         "serve": "`clintune serve`, PyTorch", "serve-int8": "`clintune serve`, ONNX int8",
         "ceiling": "PyTorch compute ceiling: `Predictor.classify`, all texts in one call"}


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    naive = {r["clients"]: r["requests_per_second"] for r in results if r["kind"] == "naive"}
    lines = ["| way | clients | requests | req/s | p50 ms | p99 ms | × naive |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r["kind"] == "ceiling":
            ratios = ", ".join(f"{r['requests_per_second'] / rate:.2f}× at {clients}" for clients, rate in naive.items())
            lines.append(f"| {NAMES['ceiling']} | – | {r['requests']} | {r['requests_per_second']:.2f} | – | – | {ratios} |")
            continue
        ratio = f"{r['requests_per_second'] / naive[r['clients']]:.2f}×" if r["clients"] in naive and r["kind"] != "naive" else ""
        lines.append(f"| {NAMES[r['kind']]} | {r['clients']} | {r['requests']} | {r['requests_per_second']:.2f} | "
                     f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {ratio} |")
    lines += ["", f"One MTS-Dialog validation dialogue per request ({args.data}); models {args.model} and {args.int8_model}; "
              f"{os.cpu_count()} CPU threads; clients are threads of one process on keep-alive connections; "
              f"serve options: {' '.join(args.serve_option) or 'defaults'}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=RUNS / "mts-clintune")
    parser.add_argument("--int8-model", type=Path, default=RUNS / "mts-clintune-int8")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mts-dialog" / "MTS-Dialog-ValidationSet.csv")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=320, help="Requests per (way, clients) for the servers.")
    parser.add_argument("--process-requests", type=int, default=32, help="Requests per (clients) for the process-per-request way.")
    parser.add_argument("--ways", nargs="+", default=list(NAMES), choices=list(NAMES))
    parser.add_argument("--serve-option", action="append", default=[], help="Extra 'clintune serve' option (repeatable, e.g. "
                        "--serve-option=--max-batch-texts=16).")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-serve")
    parser.add_argument("--naive-server", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-run", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        naive_server(args.naive_server, args.port)
        return
    if args.ceiling_run:
        ceiling_run(args.ceiling_run, str(args.data), args.requests)
        return

    import pandas as pd

    texts = list(pd.read_csv(args.data).dialogue)
    results = []
    for kind in args.ways:
        print(f"{kind}:", file=sys.stderr, flush=True)
        if kind == "ceiling":
            results.append(ceiling(args))
            print(f"  {results[-1]['requests_per_second']:.2f} texts/s", file=sys.stderr, flush=True)
            continue
        process, port = start_server(kind, args) if kind != "process" else (None, None)
        try:
            for clients in args.clients:
                total = args.process_requests if kind == "process" else args.requests
                result = measure(kind, clients, total, texts, args, port)
                print(f"  {clients} client(s): {result['requests_per_second']:.2f} req/s, p50 {result['p50_ms']:.0f} ms, "
                      f"p99 {result['p99_ms']:.0f} ms", file=sys.stderr, flush=True)
                results.append(result)
        finally:
            if process is not None:
                stop_server(process)
    table = report(results, args)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_serve.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "bench_serve.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
