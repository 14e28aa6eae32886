"""`python -m worker …`: run one job (what the coordinator's executor calls) or the throughput benchmark."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from llmos_chain.errors import LlmosError, WorkerError


def _hold_pid_file(work_dir: Path) -> object:
    """Write this process's id into `<work dir>/worker.pid` and keep it locked until exit (the coordinator's
    executor uses the lock to find runs that outlived the coordinator that started them)."""
    import fcntl
    import os

    work_dir.mkdir(parents=True, exist_ok=True)
    handle = open(work_dir / "worker.pid", "a+")  # noqa: SIM115 (held for the life of the process)
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _run(args: argparse.Namespace) -> int:
    _lock = _hold_pid_file(Path(args.work_dir))  # noqa: F841 (kept open on purpose)
    from llmos_chain.chain.connect import connect
    from llmos_chain.chain.deploy import Deployment, Suite
    from llmos_chain.crypto.keys import Keystore
    from llmos_chain.settings import load_settings
    from worker.runner import failure_report, run_job

    settings = load_settings(rpc_url=args.rpc, deployment=args.deployment, keystore=args.keystore)
    conn = connect(settings.rpc_url)
    suite = Suite(conn.w3, Deployment.load(settings.deployment))
    suite.verify()
    signer = settings.account(conn.dev_accounts(), args.dev_account)
    enc_key = Keystore(settings.keystore).load_encryption_key(args.enc_key)

    def report(step: str, info: dict) -> None:
        if args.json:
            print(json.dumps({"event": step, **info}, default=str), file=sys.stderr, flush=True)

    from llmos_chain.net import FetchPolicy

    # The job's URIs are a stranger's: local files only under the roots the provider configured (none by default).
    policy = FetchPolicy() if args.any_local_file else FetchPolicy.for_daemon(args.file_root or [])
    ray = None
    if args.ray_address:
        from worker.distributed import RayOptions

        ray = RayOptions(address=args.ray_address, resource=args.ray_resource, start_timeout_s=args.ray_start_timeout,
                         collective_timeout_s=args.ray_collective_timeout, threads=args.ray_threads)
    try:
        result = run_job(suite, args.job, signer, enc_key, Path(args.results), Path(args.work_dir), report, policy, ray)
    except WorkerError as exc:
        failure = failure_report(exc)
        print(json.dumps({"ok": False, "job_id": args.job, **failure}))
        return 3
    print(json.dumps({"ok": True, "job_id": args.job, "bundle": str(result.bundle), "metrics": result.metrics,
                      "attestation": result.attestation.to_json(), "signature": "0x" + result.signature.hex(),
                      "timings": result.timings}))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from worker.bench import measure

    result = measure(steps=args.steps, model=args.model)
    print(json.dumps(result))
    return 0


def _bench_scale(args: argparse.Namespace) -> int:
    from worker.bench_scale import measure

    logging.getLogger("ray").setLevel(logging.WARNING)
    print(json.dumps(measure(args.ranks, steps=args.steps, model=args.model, batch_size=args.batch_size, nodes=args.nodes,
                             address=args.address)))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from llmos_chain.recipe import Recipe
    from worker.predict import classify

    print(json.dumps(classify(Recipe.load(args.recipe), Path(args.weights).read_bytes(), args.text)))
    return 0


def _check(args: argparse.Namespace) -> int:
    from llmos_chain.recipe import Recipe
    from worker.predict import check_output

    print(json.dumps(check_output(Recipe.load(args.recipe), Path(args.weights).read_bytes())))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from worker.serve.process import main as serve

    return serve(args.host, args.port, args.job, args.max_batch, args.max_wait_ms, args.threads)


def _bench_serve(args: argparse.Namespace) -> int:
    from worker.serve.bench import measure

    logging.getLogger("httpx").setLevel(logging.WARNING)
    print(json.dumps(measure(clients=args.clients, seconds=args.seconds, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             threads=args.threads)))
    return 0


def _bench_verify(args: argparse.Namespace) -> int:
    from worker.bench_verify import measure

    print(json.dumps(measure(args.model, args.interval_steps, args.intervals, args.cheat_model)))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from worker.verify import serve_request

    return serve_request(sys.stdin, sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description="The llmos worker runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run one assigned, granted job and write its signed result bundle.")
    run.add_argument("--job", type=int, required=True)
    run.add_argument("--rpc", help="JSON-RPC URL (env LLMOS_RPC_URL)")
    run.add_argument("--deployment", type=Path, help="deployment file (env LLMOS_DEPLOYMENT)")
    run.add_argument("--keystore", type=Path, help="keystore holding the worker's encryption key (env LLMOS_KEYSTORE)")
    run.add_argument("--enc-key", required=True, help="name of the worker's encryption key in the keystore")
    run.add_argument("--dev-account", type=int, default=0, help="dev chains without LLMOS_PRIVATE_KEY: which account signs")
    run.add_argument("--results", default="results", help="result store directory")
    run.add_argument("--work-dir", default="work", help="scratch directory (never holds plaintext)")
    run.add_argument("--json", action="store_true", help="progress events as JSON lines on stderr")
    run.add_argument("--file-root", action="append", help="a directory whose files the job's file:// URIs may name (repeatable); "
                     "without one, file:// URIs are refused")
    run.add_argument("--any-local-file", action="store_true", help="let file:// URIs name any local file (a trusted, local setup)")
    run.add_argument("--ray-address", help="train over this Ray cluster (auto, ray://host:10001, local), one rank per slot "
                     "of the job's demand; without it the job trains in this process")
    run.add_argument("--ray-resource", default="auto", choices=["auto", "CPU", "GPU"], help="what one rank takes")
    run.add_argument("--ray-start-timeout", type=float, default=180.0, help="seconds for every rank to start")
    run.add_argument("--ray-collective-timeout", type=float, default=300.0, help="seconds one gloo/NCCL collective may wait")
    run.add_argument("--ray-threads", type=int, default=1, help="torch threads per rank on CPU")
    bench = sub.add_parser("bench", help="Runner vs bare PyTorch training throughput (JSON on stdout).")
    bench.add_argument("--steps", type=int, default=60)
    bench.add_argument("--model", default="minilm-l6", help="minilm-l6 (default), tiny-bert")
    scale = sub.add_parser("bench-scale", help="One job on 1, 2, … ranks of a Ray cluster: tokens/s, efficiency, start-up.")
    scale.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    scale.add_argument("--steps", type=int, default=30)
    scale.add_argument("--model", default="tiny-bert", help="tiny-bert (default) or minilm-l6")
    scale.add_argument("--batch-size", type=int, default=16, help="the global batch, the same for every rank count")
    scale.add_argument("--nodes", type=int, default=2, help="local Ray nodes to start (without --address)")
    scale.add_argument("--address", help="an existing Ray cluster instead of a local one")
    predict = sub.add_parser("predict", help="Classify texts with a fine-tuned output (JSON on stdout).")
    predict.add_argument("--recipe", type=Path, required=True, help="the job's recipe file")
    predict.add_argument("--weights", type=Path, required=True, help="the decrypted output (safetensors)")
    predict.add_argument("--text", action="append", required=True, help="a text to classify (repeatable)")
    check = sub.add_parser("check", help="Load a fine-tuned output on its base model and run it: its trainable weights' hash "
                           "and whether it gives finite outputs (JSON on stdout; what the client audit runs).")
    check.add_argument("--recipe", type=Path, required=True, help="the job's recipe file")
    check.add_argument("--weights", type=Path, required=True, help="the decrypted output (safetensors)")
    serve = sub.add_parser("serve", help="Serve a fine-tuned output over HTTP; the recipe and decrypted weights come on stdin "
                           "(see worker/serve/process.py), never from a file.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port (the listening event names it)")
    serve.add_argument("--job", type=int, help="the job the model came from (shown by /health)")
    serve.add_argument("--max-batch", type=int, default=32, help="most requests in one forward pass")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    serve.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    bench_serve = sub.add_parser("bench-serve", help="The served model beside a bare transformers pipeline (JSON on stdout).")
    bench_serve.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    bench_serve.add_argument("--seconds", type=float, default=3.0, help="measured time per concurrency level and side")
    bench_serve.add_argument("--max-batch", type=int, default=32)
    bench_serve.add_argument("--max-wait-ms", type=float, default=5.0)
    bench_serve.add_argument("--threads", type=int, help="torch threads of each side (default: half the cores, at least 1)")
    sub.add_parser("verify", help="Replay intervals of a job's training (the request, keys included, comes as one JSON line on "
                   "stdin; see worker/verify.py); exit 0: all replayed intervals agree, 1: one diverges, 2: could not verify.")
    bench_verify = sub.add_parser("bench-verify", help="One interval's replay against its training, and the bisection against "
                                  "each cheat (JSON on stdout).")
    bench_verify.add_argument("--model", default="minilm-l6", help="the ratio's model: minilm-l6 (default) or tiny-bert")
    bench_verify.add_argument("--interval-steps", type=int, default=40)
    bench_verify.add_argument("--intervals", type=int, default=64, help="intervals of the bisection's job")
    bench_verify.add_argument("--cheat-model", default="tiny-bert")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "json", False) is False else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        return {"run": _run, "bench": _bench, "bench-scale": _bench_scale, "predict": _predict, "check": _check, "serve": _serve,
                "bench-serve": _bench_serve, "verify": _verify, "bench-verify": _bench_verify}[args.command](args)
    except LlmosError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
