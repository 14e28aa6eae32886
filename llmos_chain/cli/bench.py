"""`llmos bench …`: benchmarks that print their figures beside a baseline."""

from __future__ import annotations

from pathlib import Path

import typer

from llmos_chain.cli.output import console, emit_json, table

app = typer.Typer(help="Benchmarks (each prints a table, or JSON with --json).", no_args_is_help=True)


@app.command("gas")
def gas(json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Gas of one job's whole lifecycle (post → assign → grant → submit → accept → withdraw), ETH and ERC-20.

    Measured on a fresh in-process chain; the headline figure is a steady-state job (the second on a
    deployment), the first job's one-time costs are reported apart. Printed beside it: the best-known peer
    marketplace's 730,000–1,800,000 gas per task, a figure quoted from the project's brief, not measured here.
    """
    from llmos_chain.bench.gas import CALLS, measure

    result = measure()
    if json_out:
        emit_json(result)
        return
    rows = [[call, result["calls"][call], result["calls_erc20"][call]] for call in CALLS]
    rows.append(["total (steady state)", result["total"]["eth"], result["total"]["erc20"]])
    rows.append(["total (first job)", result["first_job_total"]["eth"], result["first_job_total"]["erc20"]])
    low, high = result["peer_gas_per_task"]
    rows.append(["peer, per task (quoted, not measured)", f"{low:,}–{high:,}", ""])
    table("Gas per job lifecycle", ["call", "ETH", "ERC-20"], rows)
    targets = result["targets"]
    console.print(f"targets: ≤ {targets['eth']:,} (ETH), ≤ {targets['erc20']:,} (ERC-20), "
                  f"≤ {targets['batched_per_job_eth']:,} per job in batches of 10")
    console.print(f"peer figure: {result['peer_source']}")


@app.command("crypto")
def crypto(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Skip the 1 GiB streaming-memory measurement."),
    buffer_mib: int = typer.Option(256, "--buffer-mib", min=1, help="Size of the in-memory buffer sealed and opened."),
) -> None:
    """Seal and open a 256 MiB buffer beside the format's floor and OpenSSL on equal cores; stream 1 GiB in bounded memory.

    The floor is the same buffer through AESGCM and BLAKE3 alone on the same threads and chunk size; OpenSSL
    runs `openssl speed -multi N -evp aes-256-gcm` with N our threads (and on one core). Targets: seal and
    open each within 1.25 x the floor, under 64 MiB above the interpreter's baseline while streaming.
    """
    from llmos_chain.bench.crypto import measure

    result = measure(stream=not no_stream, size=buffer_mib << 20)
    if json_out:
        emit_json(result)
        return
    n = result["threads"]

    def gbps(x: float | None) -> str:
        return f"{x:.2f}" if x else "n/a"

    ossl1, ossl_n = result["openssl_gbps"], result["openssl_multi_gbps"]
    rows = [
        ["seal (GB/s)", gbps(result["seal_gbps"]), gbps(result["floor_seal_gbps"]), f"{result['seal_vs_floor']:.2f}", "≤ 1.25"],
        ["open (GB/s)", gbps(result["open_gbps"]), gbps(result["floor_open_gbps"]), f"{result['open_vs_floor']:.2f}", "≤ 1.25"],
        [f"openssl aes-256-gcm, {n} processes (GB/s)", gbps(ossl_n), "", "", ""],
        ["openssl aes-256-gcm, 1 core (GB/s)", gbps(ossl1), "", "", ""],
    ]
    if result["stream_peak_mib"] is not None:
        rows.append(["streaming 1 GiB, peak above baseline (MiB)", f"{result['stream_peak_mib']:.1f}", "", "", "< 64"])
    table(
        f"Sealed format vs its floor ({result['buffer_mib']:g} MiB buffer, {result['chunk_kib']} KiB chunks, {n} threads)",
        ["measure", "ours", "floor", "ours / floor (time)", "target"],
        rows,
    )
    console.print(
        f"floor: the same buffer through AESGCM and BLAKE3 alone on the same {n} threads and chunks (seal: encrypt, "
        "hash each chunk, hash the ciphertext; open: decrypt, hash each chunk), no framing."
    )
    if ossl_n:
        console.print(
            f"openssl on equal cores ({n} processes, AES-GCM alone, no hashing): seal {result['seal_gbps'] / ossl_n:.0%}, "
            f"open {result['open_gbps'] / ossl_n:.0%} of its GB/s."
        )


@app.command("scale")
def scale(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ranks: list[int] = typer.Option([1, 2], "--ranks", min=1, help="Rank counts to run (repeatable; 1 is always run)."),
    steps: int = typer.Option(30, "--steps", min=4, help="Training steps per run (the first 3 are warm-up, not timed)."),
    model: str = typer.Option("tiny-bert", "--model", help="tiny-bert or minilm-l6 (the packaged pretrained MiniLM)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="The global batch, the same for every rank count."),
    nodes: int = typer.Option(2, "--nodes", min=1, max=8, help="Local Ray nodes to start (without --address)."),
    address: str = typer.Option(None, "--address", help="Measure on this Ray cluster instead of a local one."),
) -> None:
    """One fine-tuning job (same recipe, seed, global batch) on 1, 2, … data-parallel ranks of a Ray cluster: tokens/s,
    scaling efficiency against 1 rank, start-up (Ray, process start, fetch, decrypt, load) and where each rank ran.

    Every rank has one torch thread, so the efficiency measures the distributed overhead. Runs `python -m worker
    bench-scale` in its own process (this CLI never imports torch); starts and stops its own 2-node local cluster."""
    from llmos_chain.bench.scale import measure

    if model not in ("tiny-bert", "minilm-l6"):
        from llmos_chain.errors import ConfigError

        raise ConfigError(f"--model: tiny-bert or minilm-l6, not {model!r}")
    result = measure(ranks, steps, model, batch_size, nodes, address)
    if json_out:
        emit_json(result)
        return
    nodes_of: dict[str, int] = {}
    rows = []
    for run in result["runs"]:
        where = ", ".join(f"r{i}→n{nodes_of.setdefault(n, len(nodes_of))}" for i, n in enumerate(run["placement"]))
        rows.append([run["ranks"], run["nodes"], f"{run['tokens_per_s']:.0f}", f"{run['efficiency']:.0%}", f"{run['startup_s']:.1f}",
                     f"{run['final_loss']:.4f}", where])
    table(f"Data-parallel scaling, {result['model']}, {result['steps']} steps, global batch {result['global_batch']}, "
          f"{result['threads_per_rank']} torch thread per rank", ["ranks", "nodes", "tokens/s", "efficiency", "start-up (s)",
                                                                  "final loss", "placement (rank→node)"], rows)
    console.print("efficiency: tokens/s ÷ (ranks × the 1-rank tokens/s), the first 3 steps excluded; start-up: from the call "
                  "until rank 0's first step (Ray, process start, fetch, decrypt, model load, first evaluation).")


def _worker_bench(what: str, args: list[str]) -> dict:
    """Run `python -m worker ARGS` (torch lives there, never in this CLI) and read the JSON object it prints last."""
    import json
    import subprocess
    import sys

    from llmos_chain.errors import LlmosError

    proc = subprocess.run([sys.executable, "-m", "worker", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise LlmosError(f"{what} failed (is the worker extra installed? pip install -e '.[worker]'): {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@app.command("finetune")
def finetune(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    steps: int = typer.Option(60, "--steps", min=1, help="Training steps per run (three runs each side, best kept)."),
    model: str = typer.Option("minilm-l6", "--model", help="minilm-l6 (the packaged pretrained MiniLM) or tiny-bert."),
) -> None:
    """Training tokens/s through the full worker runner beside a bare PyTorch loop (same model, data, batches),
    and the runner's whole run (fetch, verify, decrypt, load, both evaluations, train, seal, attest) against the bare
    loop's training time, phase by phase.

    Runs `python -m worker bench` in its own process: this CLI never imports torch. Target: the runner's
    overhead under 5 %; decryption and sealing are timed apart.
    """
    result = _worker_bench("the worker benchmark", ["bench", "--steps", str(steps), "--model", model])
    if json_out:
        emit_json(result)
        return
    table(f"Fine-tuning throughput, {result['model']} on {result['device']} ({result['steps']} steps, batch {result['batch_size']})",
          ["measure", "value"], [
              ["runner (tokens/s)", f"{result['runner_tokens_per_s']:.0f}"],
              ["bare PyTorch loop (tokens/s)", f"{result['bare_tokens_per_s']:.0f}"],
              ["runner overhead (target < 5 %)", f"{result['overhead']:.1%}"],
              ["decrypt dataset (s, apart)", f"{result['decrypt_s']:.3f}"],
              ["seal output (s, apart)", f"{result['seal_s']:.3f}"],
              ["whole run through the runner (s)", f"{result['runner_run_s']:.2f}"],
              ["bare loop's training steps (s)", f"{result['bare_loop_s']:.2f}"],
              ["whole run / bare loop", f"{result['run_vs_bare_loop']:.2f}×"],
              ["runner's fixed costs: run − its training steps (s)", f"{result['fixed_s']:.2f}"],
          ])
    table("The whole run by phase", ["phase (from the step named)", "s"],
          [[name, f"{seconds:.3f}"] for name, seconds in result["phases_s"].items()])


@app.command("verify")
def verify(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    model: str = typer.Option("minilm-l6", "--model", help="The ratio's model: minilm-l6 (pretrained) or tiny-bert."),
    interval_steps: int = typer.Option(40, "--interval-steps", min=1, help="Steps of the interval replayed for the ratio."),
    intervals: int = typer.Option(64, "--intervals", min=2, help="Intervals of the job the bisection runs on."),
) -> None:
    """Verification by replay: one interval's replay (decrypt, load, restore, run) against the same interval's original
    training (target <= 1.5x), and the bisection against each cheating worker: the first diverging interval it finds
    and the replays it needs (target <= 8 for 64 intervals). Runs `python -m worker bench-verify` (torch stays out of
    this CLI)."""
    result = _worker_bench("the verification benchmark", ["bench-verify", "--model", model, "--interval-steps", str(interval_steps),
                                                           "--intervals", str(intervals)])
    if json_out:
        emit_json(result)
        return
    table(f"One interval ({result['interval_steps']} steps of {result['model']}): replay vs original training", ["measure", "value"], [
        ["original training of the interval (s)", f"{result['train_s']:.2f}"],
        ["replay: decrypt + load + restore + steps (s)", f"{result['replay_s']:.2f}"],
        ["  of which the steps (s)", f"{result['replay_steps_s']:.2f}"],
        ["ratio (target <= 1.5)", f"{result['ratio']:.2f}x"],
    ])
    table(f"Bisection on a {result['intervals']}-interval job ({result['cheat_model']})", ["worker", "first diverging interval found",
          "where it began", "replays"],
          [[name, str(r["diverging_interval"]), str(r["expected_interval"]), str(r["replays"])] for name, r in result["runs"].items()])


@app.command("serve")
def serve(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.5, max=600, help="Measured time per concurrency level, each side."),
    max_batch: int = typer.Option(32, "--max-batch", min=1, max=1024, help="The server's largest batch."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, max=1000, help="How long the server's batches wait to fill."),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads of each side (default: half the cores, at least 1)."),
) -> None:
    """The served model (`llmos serve`: HTTP, dynamic batching) beside a bare `transformers` text-classification pipeline
    on the same model (MiniLM) in the same run: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients.

    Each client sends one text per request, back to back. Target: the served model's throughput ≥ 2× the bare
    pipeline's at 32 clients on CPU. Runs `python -m worker bench-serve` in its own process (this CLI never imports torch).
    """
    args = ["bench-serve", "--seconds", str(seconds), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    if threads is not None:
        args += ["--threads", str(threads)]
    result = _worker_bench("the serving benchmark", args)
    if json_out:
        emit_json(result)
        return
    table(f"Serving {result['model']} on {result['device']} ({result['cores']} cores, {result['torch_threads']} torch thread(s) "
          f"each side, {result['seconds_per_level']:g} s per level)",
          ["clients", "served req/s", "p50 ms", "p99 ms", "mean batch", "bare req/s", "bare p50 ms", "bare p99 ms", "served / bare"],
          [[r["clients"], r["rps"], r["p50_ms"], r["p99_ms"], r["mean_batch"], r["bare_rps"], r["bare_p50_ms"], r["bare_p99_ms"],
            f"{r['speedup']:.2f}×"] for r in result["runs"]])
    console.print(f"target: served ≥ {result['target']['speedup']:g}× the bare pipeline at {result['target']['clients']} clients")


@app.command("alloc")
def alloc(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    sizes: str = typer.Option("", "--sizes", help="Comma-separated JOBSxWORKERS instances (default: each family's sizes)."),
    families: str = typer.Option("", "--families",
                                 help="Comma-separated instance families: random, tight_memory, deadlines, few_fit, multi_gpu, "
                                      "cluster (jobs split over nodes) (default: all)."),
    time_limit: float = typer.Option(2.0, "--time-limit", help="Seconds per solve, above 0 (instances above 1,000 jobs get at least 5)."),
) -> None:
    """The allocation program against greedy on the same instances, both against the MILP's proven bound: solve
    times (building included) for both, the gap of each to the bound, and the MILP's cost over greedy's. Families:
    random fleets (greedy within about 0.5 % there) and hard ones where greedy is 5 % or more off; cluster ones
    (nodes of 8 GPUs, a tenth of the jobs larger than a node) solved by the split allocation beside today's packed
    MILP and greedy. Targets: 1,000×100 within 1 % in under 2 s; 10,000×1,000 within 1 % in under 5 s on one core."""
    from llmos_chain.bench.alloc import ALL_FAMILIES, SPLIT_FAMILIES, run
    from llmos_chain.errors import ConfigError

    if not 0 < time_limit < float("inf"):  # also refuses nan
        raise ConfigError(f"--time-limit must be a number of seconds above 0, got {time_limit}")
    parsed = None
    if sizes:
        try:
            parsed = [tuple(int(n) for n in size.lower().split("x")) for size in sizes.split(",")]
            if any(len(p) != 2 or min(p) < 1 for p in parsed):
                raise ValueError
        except ValueError:
            raise ConfigError(f"--sizes must look like 100x10,1000x100; got {sizes!r}") from None
    chosen = [f.strip() for f in families.split(",") if f.strip()] if families else None
    if chosen is not None and (not chosen or any(f not in ALL_FAMILIES for f in chosen)):
        raise ConfigError(f"--families must name some of {', '.join(ALL_FAMILIES)}; got {families!r}")
    result = run([(p[0], p[1]) for p in parsed] if parsed else None, time_limit_s=time_limit, families=chosen)
    if json_out:
        emit_json(result)
        return

    def pct(x: float | None) -> str:
        return "none" if x is None else f"{x:.2%}"

    packed = [r for r in result["runs"] if r["family"] not in SPLIT_FAMILIES]
    split = [r for r in result["runs"] if r["family"] in SPLIT_FAMILIES]
    if packed:
        table("Allocation: MILP (HiGHS) vs greedy, both against the MILP's proven bound",
              ["family", "jobs × workers", "pairs", "limit s", "solve s", "greedy s", "gap to bound", "greedy gap", "cost vs greedy",
               "assigned (greedy)", "status"],
              [[r["family"], f"{r['jobs']}×{r['workers']}", r["variables"], f"{r['time_limit_s']:g}", f"{r['solve_s']:.2f}",
                f"{r['greedy_s']:.2f}", pct(r["gap"]), pct(r["greedy_gap"]), f"{r['vs_greedy']:.4f}",
                f"{r['assigned']} ({r['greedy_assigned']})", r["status"]] for r in packed])
    if split:
        table("Split allocation (jobs over several nodes) vs today's packed MILP and greedy, all against the split bound",
              ["family", "jobs × nodes", "limit s", "solve s", "packed s", "gap to bound", "packed gap", "greedy gap",
               "GPUs used / free / requested", "assigned (packed)", "split jobs", "oversize placed", "status"],
              [[r["family"], f"{r['jobs']}×{r['workers']}", f"{r['time_limit_s']:g}", f"{r['solve_s']:.2f}", f"{r['packed_s']:.2f}",
                pct(r["gap"]), pct(r["packed_gap"]), pct(r["greedy_gap"]),
                f"{r['gpus_used']} / {r['gpus_free']} / {r['gpus_requested']}", f"{r['assigned']} ({r['packed_assigned']})",
                r["split_jobs"], f"{r['oversize_placed']} of {r['oversize_jobs']}", r["status"]] for r in split])


@app.command("pipeline")
def pipeline(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    jobs: int = typer.Option(100, "--jobs", min=1, help="Jobs posted ahead for the throughput runs."),
    latency_jobs: int = typer.Option(30, "--latency-jobs", min=0, help="Jobs posted live at 1 s blocks for the latency run (0: skip it)."),
) -> None:
    """JobPosted → Assigned on anvil with no training, each part on a fresh node in the same run: the node's own
    ceiling (plain transfers per second through the same RPC client), the coordinator's jobs per second on jobs
    posted ahead (all open jobs per cycle, and a baseline allocating one per cycle), and the latency in blocks with a
    client posting live at 1 s blocks. Target: at least 40 jobs/s or 0.8 × the node's ceiling, whichever is lower;
    a median latency of 1 block."""
    from llmos_chain.bench.pipeline import run

    result = run(jobs, latency_jobs=latency_jobs)
    if json_out:
        emit_json(result)
        return
    node = result["node_ceiling"]
    rows = [["node ceiling: plain transfers", f"{node['transfers']}", "-", f"{node['transfers']}", f"{node['tx_per_s']:.1f}", "1.00"]]
    for name, r in (("coordinator (assignMany per worker)", result["batched"]), ("coordinator, one assign per job", result["one_tx_per_job"]),
                    ("baseline: one job per cycle", result["baseline_one_per_cycle"])):
        rows.append([name, f"{r['assigned']}/{r['jobs']}", r["cycles"], r["transactions"], f"{r['jobs_per_s']:.1f}",
                     f"{r['jobs_per_s'] / node['tx_per_s']:.2f}"])
    table("Pipeline on anvil: JobPosted → Assigned (jobs posted ahead)", ["measure", "assigned", "cycles", "txs", "per s", "vs node"], rows)
    verdict = "met" if result["meets_target"] else "NOT met"
    print(f"target {result['target_jobs_per_s']:.1f} jobs/s (min of 40 and 0.8 × node): {verdict}")
    live = result["latency_1s_blocks"]
    if live:
        print(f"latency at {live['block_time_s']:.0f} s blocks, {live['per_block']} jobs a block: median {live['median_latency_blocks']} "
              f"block(s) (max {live['max_latency_blocks']}), {live['median_latency_s']:.2f} s from the post's receipt; "
              f"{live['assigned']}/{live['jobs']} assigned")


@app.command("soak")
def soak(
    jobs: int = typer.Option(3, "--jobs", min=1, help="Jobs to post (each a tiny recipe that trains in seconds on CPU)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    error_rate: float = typer.Option(0.0, "--error-rate", min=0.0, max=1.0, help="Fraction of RPC requests failed (half HTTP 502, half -32603)."),
    hang_rate: float = typer.Option(0.0, "--hang-rate", min=0.0, max=1.0, help="Fraction of RPC requests held --hang-s seconds."),
    hang_s: float = typer.Option(20.0, "--hang-s", min=0.0, help="How long a hung request is held."),
    lag_blocks: int = typer.Option(0, "--lag-blocks", min=0, help="How far behind the head a lagging backend is."),
    lag_rate: float = typer.Option(0.0, "--lag-rate", min=0.0, max=1.0, help="Fraction of RPC requests answered by the lagging backend."),
    timeout_s: float | None = typer.Option(None, "--timeout-s", min=1.0, help="Give up waiting after this long (default 120 s + 15 s per job)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fault proxy's random draws."),
    slots: int = typer.Option(2, "--slots", min=1, help="GPU slots of the provider's one worker (jobs trained at once)."),
    keep: Path | None = typer.Option(None, "--keep", help="Run in this directory and leave it (logs, databases) instead of a temporary one."),
) -> None:
    """N jobs through the whole lifecycle on a fresh anvil while a proxy injects RPC faults into the daemons' traffic.

    The coordinator and the owner's and client's agents run as separate processes behind the fault proxy; posting
    and measuring read the chain directly. Reports jobs settled and lost, duplicate transactions, FailureReported
    events (all caused by the infrastructure: every job is good), wasted gas and p50/p99 seconds from posting to each
    state. Exits 2 if anvil or the worker extra (torch) is missing; lost jobs are a measurement, not an error exit.
    """
    from llmos_chain.bench.soak import LATENCY_STATES, missing_requirements
    from llmos_chain.bench.soak import soak as run_soak

    problem = missing_requirements()
    if problem:
        from llmos_chain.cli.output import error

        error(problem)
        raise typer.Exit(2)
    faults = {"error_rate": error_rate, "hang_rate": hang_rate, "hang_s": hang_s, "lag_blocks": lag_blocks, "lag_rate": lag_rate}
    result = run_soak(jobs, {k: v for k, v in faults.items() if v}, timeout_s=timeout_s, seed=seed, slots=slots, keep=keep)
    if json_out:
        emit_json(result)
        return
    shown = {k: v for k, v in faults.items() if v and (k != "hang_s" or hang_rate)}
    fault_text = ", ".join(f"{k}={v}" for k, v in shown.items()) or "none"
    rows = [["jobs settled", f"{result['settled']}/{result['jobs']}", "all"], ["jobs lost", result["lost"], "0"],
            ["final states", ", ".join(f"{k} {v}" for k, v in sorted(result["states"].items())), ""],
            ["duplicate transactions", result["duplicate_txs"], "0"], ["FailureReported (infrastructure)", result["infra_failures"], "0"],
            ["reverted transactions", result["reverted_txs"], "0"], ["wasted gas", f"{result['wasted_gas']:,}", "0"]]
    for state in LATENCY_STATES:
        lat = result["latency"][state]
        if lat["n"]:
            rows.append([f"posted → {state} p50 / p99 s", f"{lat['p50_s']:.1f} / {lat['p99_s']:.1f}", ""])
    if result["daemon_crashes"]:
        rows.append(["daemon exits (restarted)", len(result["daemon_crashes"]), "0"])
    rows.append(["RPC requests (injected faults)", f"{result['proxy']['requests']} ({sum(result['proxy']['faults'].values())})", ""])
    rows.append(["wall time s" + (" (timed out)" if result["timed_out"] else ""), f"{result['wall_s']:.0f}", ""])
    table(f"Soak on anvil, faults: {fault_text}", ["measure", "value", "target"], rows)


@app.command("startup")
def startup(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    runs: int = typer.Option(10, "--runs", min=1, help="Fresh processes per command; the median is reported."),
    baseline: Path | None = typer.Option(None, "--baseline", help="Another checkout of this project (e.g. a `git worktree` of "
                                         "an older commit): timed in the same rounds, side by side."),
) -> None:
    """How long `llmos` takes to answer --help, a subcommand's help, a usage error and --version: the median wall time
    of fresh processes, interpreter start included. Target: each under 0.5 s."""
    from llmos_chain.bench.startup import measure

    result = measure(runs, baseline)
    if json_out:
        emit_json(result)
        return
    base = result.get("baseline")
    columns = ["command", "median s"] + (["baseline median s", "vs baseline"] if base else [])
    rows = []
    for name, median in result["commands"].items():
        row = [name, f"{median:.3f}"]
        if base:
            row += [f"{base['commands'][name]:.3f}", f"{median / base['commands'][name]:.2f}×"]
        rows.append(row)
    table(f"CLI start-up, median of {result['runs']} fresh processes ({result['python']})", columns, rows)
    console.print(f"slowest median {result['max_median_s']:.3f} s (target < {result['target_s']} s)"
                  + (f"; baseline {base['max_median_s']:.3f} s ({base['source']})" if base else ""))
