"""`llmos dataset …`: seal, inspect, open, register, grant, revoke."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import typer

from llmos_chain.cli.common import (
    DEPLOYMENT,
    DEV_ACCOUNT,
    JSON,
    KEYSTORE,
    RPC,
    UINT256_MAX,
    acting,
    byte_progress,
    check_output_file,
    check_uri,
    keystore,
    tx_hex,
)
from llmos_chain.cli.output import console, emit_json, table, warn
from llmos_chain.errors import ConfigError, SealedDataError

# The sealed format's chunk sizes (llmos_chain.crypto.stream's DEFAULT_CHUNK_SIZE and MAX_CHUNK_SIZE, checked equal by
# tests/cli/test_main.py), here so that --help needs neither the format nor the chain libraries: both are imported by
# the commands that use them.
DEFAULT_CHUNK_SIZE = 512 << 10
MAX_CHUNK_SIZE = 1 << 24

app = typer.Typer(help="Sealed datasets: seal and open files, register them on-chain, grant access to an assigned worker or drop it.", no_args_is_help=True)
DATASET = typer.Argument(..., min=0, max=UINT256_MAX, help="Dataset id.")


def _hex32(value: str | None, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{what} must be 32 bytes of hex (0x + 64 digits), got {value!r}")
    return raw


@app.command("seal")
def seal(
    src: Path = typer.Argument(..., help="Plaintext file (JSONL, CSV, …)."),
    dst: Path = typer.Argument(..., help="Where to write the sealed file; its manifest goes to DST.json."),
    key_id: str = typer.Option(None, "--key-id", help="Seal under this existing data key instead of a new one."),
    chunk_size: int = typer.Option(DEFAULT_CHUNK_SIZE, "--chunk-size", min=1, max=MAX_CHUNK_SIZE,
                                   help="Plaintext bytes per chunk."),
    force: bool = typer.Option(False, "--force", help="Replace an existing DST. Its manifest is kept as DST.json.replaced-KEYID "
                               "and its data key stays in the keystore."),
    keystore_dir: Path = KEYSTORE,
    json_out: bool = JSON,
) -> None:
    """Encrypt a file in the sealed format; the data key stays in the keystore, the hashes go to the manifest.

    An existing DST (or DST.json) is never replaced without --force: its manifest and key are what opens it."""
    from llmos_chain.crypto import stream
    from llmos_chain.datasets import manifest_path, seal_dataset

    if not src.is_file():
        raise ConfigError(f"no such file: {src}")
    check_output_file(dst, "DST")
    manifest_file = manifest_path(dst)
    if src.resolve() in (dst.resolve(), manifest_file.resolve()):
        raise ConfigError(f"DST {dst} would overwrite the plaintext SRC {src}")
    existing = [p for p in (dst, manifest_file) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} already exists{_sealed_under(manifest_file)}: refusing to replace it "
                          "(pass --force to replace it; its manifest is then kept beside it)")
    store = keystore(keystore_dir)
    if key_id is None:
        # The new key is in the keystore before a byte is sealed under it: a sealed file never outlives its key.
        key_id = store.save_data_key(stream.new_data_key())
    else:
        store.load_data_key(key_id)  # fails now, before anything is written, if it is missing
    kept = _keep_manifest(manifest_file) if force and manifest_file.is_file() else None
    try:
        with byte_progress(f"sealing {src.name}", src.stat().st_size, enabled=not json_out) as progress:
            manifest = seal_dataset(src, dst, store, key_id, chunk_size, progress)  # type: ignore[arg-type]
    except BaseException:
        if kept is not None:  # nothing was replaced: drop the copy
            kept.unlink(missing_ok=True)
        raise
    if existing:
        warn(f"replaced {dst}{_sealed_under(kept) if kept else ''}"
             + (f"; its manifest is kept as {kept}, its data key stays in the keystore" if kept else ""))
    if json_out:
        emit_json({**manifest.__dict__, "sealed": str(dst), "manifest": str(manifest_file),
                   **({"replaced_manifest": str(kept)} if kept else {})})
        return
    table(f"Sealed {src} → {dst}", ["field", "value"], [
        ["content root", manifest.content_root], ["cipher hash", manifest.cipher_hash], ["key id", manifest.key_id],
        ["plaintext bytes", manifest.plaintext_size], ["sealed bytes", manifest.sealed_size], ["chunks", manifest.chunks],
    ])


def _sealed_under(manifest_file: Path) -> str:
    """' (sealed under key K)' from a manifest, or '' when there is none to read."""
    from llmos_chain.datasets import Manifest

    try:
        return f" (sealed under key {Manifest.load(manifest_file).key_id})"
    except ConfigError:
        return ""


def _keep_manifest(manifest_file: Path) -> Path:
    """Copy a manifest that is about to be replaced to DST.json.replaced-KEYID (never over another copy)."""
    from llmos_chain.datasets import Manifest

    try:
        tag = Manifest.load(manifest_file).key_id
    except ConfigError:
        tag = "unknown-key"
    kept = manifest_file.with_name(f"{manifest_file.name}.replaced-{tag}")
    n = 1
    while kept.exists() or kept.is_symlink():
        n += 1
        kept = manifest_file.with_name(f"{manifest_file.name}.replaced-{tag}.{n}")
    shutil.copyfile(manifest_file, kept)
    return kept


#: The manifest fields `dataset inspect` checks against the sealed file itself.
_CHECKED = ("cipher_hash", "key_id", "plaintext_size", "sealed_size", "chunks", "chunk_size")


@app.command("inspect")
def inspect_cmd(sealed: Path = typer.Argument(..., help="Sealed file."), json_out: bool = JSON) -> None:
    """Show a sealed file's header and hashes; needs no key. With its manifest (DST.json) beside it, the file must
    match it (cipher hash, key id, sizes): a mismatch exits 1."""
    from llmos_chain.crypto import stream
    from llmos_chain.datasets import Manifest, manifest_path

    if sealed.is_dir():
        raise ConfigError(f"{sealed} is a directory, not a sealed file")
    info = stream.inspect(sealed)
    manifest_file = manifest_path(sealed)
    mismatches: list[str] = []
    if manifest_file.is_file():
        manifest = Manifest.load(manifest_file)
        for field in _CHECKED:
            expected, got = getattr(manifest, field), info[field]
            if str(expected).lower() != str(got).lower():
                mismatches.append(f"{field} {got} (manifest: {expected})")
        info = {**info, "manifest": str(manifest_file), "manifest_matches": not mismatches}
    if json_out:
        emit_json(info)
    else:
        table(f"{sealed}", ["field", "value"], [[k, v] for k, v in info.items()])
    if mismatches:
        raise SealedDataError(f"{sealed} does not match its manifest {manifest_file}: {'; '.join(mismatches)}")


@app.command("open")
def open_cmd(
    source: str = typer.Argument(..., help="Sealed file path, or a file:// / http(s):// URI."),
    key_id: str = typer.Option(..., "--key-id", help="Data key id (from `dataset seal`)."),
    out: str = typer.Option(..., "--out", help="Plaintext output file, or - for stdout."),
    cipher_hash: str = typer.Option(None, "--cipher-hash", help="Expected cipher hash; required for http(s) sources."),
    expect_root: str = typer.Option(None, "--expect-root", help="Expected content root (default: from the manifest beside a local file)."),
    keystore_dir: Path = KEYSTORE,
    json_out: bool = JSON,
) -> None:
    """Decrypt a sealed file as its owner. Any tampering stops it with the cause; no partial output is left.

    With `--out -` the file is verified completely first (every chunk and the content root) and only then
    decrypted to stdout, so a tampered file writes nothing; this reads the file twice."""
    from llmos_chain.crypto import stream
    from llmos_chain.crypto.fetch import fetch
    from llmos_chain.datasets import Manifest, manifest_path

    if out != "-":
        check_output_file(Path(out), "--out")
    data_key = keystore(keystore_dir).load_data_key(key_id)
    expected_hash = _hex32(cipher_hash, "--cipher-hash")
    root = _hex32(expect_root, "--expect-root")
    local = Path(source) if "://" not in source else None
    if local is not None and local.is_file() and manifest_path(local).is_file():
        manifest = Manifest.load(manifest_path(local))
        root = root or manifest.root_bytes()
        expected_hash = expected_hash or manifest.cipher_bytes()
    with tempfile.TemporaryDirectory(prefix="llmos-fetch-") as tmp:
        if local is None or expected_hash is not None:
            if expected_hash is None:
                raise ConfigError("a remote source needs --cipher-hash (the registry's) to be checked before decryption")
            with byte_progress("fetching", None, enabled=not json_out) as progress:
                path = fetch(source, Path(tmp), expected_hash, progress)  # type: ignore[arg-type]
        else:
            path = local
        if out == "-":
            # Verify first, then stream: the whole file is authenticated (and its root checked) with nothing
            # written, then decrypted again chunk by chunk to stdout. Nothing unauthenticated ever reaches stdout.
            with stream.SealedFile.open(path) as sealed:
                stream.open_stream(sealed, _Discard(), data_key, root)
                result = stream.open_stream(sealed, sys.stdout.buffer, data_key, root)
            sys.stdout.buffer.flush()
        else:
            size = path.stat().st_size
            with byte_progress(f"opening {path.name}", size, enabled=not json_out) as progress:
                result = stream.open_file(path, Path(out), data_key, root, progress)  # type: ignore[arg-type]
    summary = {"content_root": "0x" + result.content_root.hex(), "plaintext_size": result.plaintext_size, "chunks": result.chunks,
               "root_checked": root is not None, "cipher_hash_checked": expected_hash is not None, "out": out}
    if json_out and out != "-":
        emit_json(summary)
    elif out != "-":
        console.print(f"opened {result.plaintext_size:,} bytes into {out} (content root {summary['content_root']}"
                      f"{', verified' if root is not None else ''})")


class _Discard:
    """A sink for the verifying pass of `open --out -`."""

    def write(self, data: object) -> int:
        return len(data)  # type: ignore[arg-type]


@app.command("register")
def register(
    sealed: Path = typer.Argument(..., help="Sealed file (its manifest DST.json must be beside it)."),
    uri: str = typer.Option(..., "--uri", help="Where workers fetch the sealed file (file://, http(s)://)."),
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    dev_account: int = DEV_ACCOUNT,
    json_out: bool = JSON,
) -> None:
    """Record the dataset's content root, cipher hash, size and URI in the DatasetRegistry."""
    from llmos_chain.crypto import stream
    from llmos_chain.datasets import Manifest, manifest_path, register_dataset

    check_uri(uri, "--uri")
    manifest = Manifest.load(manifest_path(sealed))
    stream.verify_cipher_hash(sealed, manifest.cipher_bytes())
    owner = acting(rpc, deployment, dev_account)
    dataset_id, receipt = register_dataset(owner, manifest, uri)
    result = {"dataset": dataset_id, "owner": owner.address, "tx": tx_hex(receipt),
              "gas": int(receipt["gasUsed"]), "content_root": manifest.content_root, "cipher_hash": manifest.cipher_hash}
    if json_out:
        emit_json(result)
    else:
        console.print(f"registered dataset [bold]{dataset_id}[/] (tx {result['tx']}, {receipt['gasUsed']:,} gas)")


@app.command("grant")
def grant(
    dataset_id: int = DATASET,
    job: int = typer.Option(..., "--job", min=0, max=UINT256_MAX, help="The job whose assigned worker gets access."),
    key_id: str = typer.Option(..., "--key-id", help="The dataset's data key id."),
    keystore_dir: Path = KEYSTORE,
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    dev_account: int = DEV_ACCOUNT,
    json_out: bool = JSON,
) -> None:
    """Wrap the data key to the job's assigned worker (HPKE, bound to chain, market, dataset, job, worker) and publish it.

    The grant starts the worker's run window (the job's run time). It cannot be taken back: the wrapped key is public
    once published. To refuse a worker, drop the assignment instead (`llmos dataset drop`)."""
    from llmos_chain.datasets import grant_access

    owner = acting(rpc, deployment, dev_account)
    plan, receipt = grant_access(owner, keystore(keystore_dir), dataset_id, job, key_id)
    result = {"dataset": dataset_id, "job": job, "worker": plan.worker, "key_kind": plan.key_kind.value,
              "tx": tx_hex(receipt), "gas": int(receipt["gasUsed"])}
    if json_out:
        emit_json(result)
    else:
        console.print(f"granted worker {plan.worker} access to dataset {dataset_id} for job {job} ({receipt['gasUsed']:,} gas)")


@app.command("drop")
def drop(
    dataset_id: int = DATASET,
    job: int = typer.Option(..., "--job", min=0, max=UINT256_MAX, help="The assigned job whose worker you refuse."),
    rpc: str = RPC,
    deployment: Path = DEPLOYMENT,
    dev_account: int = DEV_ACCOUNT,
    json_out: bool = JSON,
) -> None:
    """Refuse the worker assigned to a job on your dataset before granting: the job goes back to the market and that
    worker cannot retake it for a grant timeout."""
    from llmos_chain.chain.market import get_job

    owner = acting(rpc, deployment, dev_account)
    view = get_job(owner.suite, job)
    if view.dataset_id != dataset_id:
        raise ConfigError(f"job {job} is for dataset {view.dataset_id}, not {dataset_id}")
    worker = view.worker
    receipt = owner.drop_assignment(job, view.terms)
    result = {"dataset": dataset_id, "job": job, "worker": worker, "tx": tx_hex(receipt), "gas": int(receipt["gasUsed"])}
    if json_out:
        emit_json(result)
    else:
        console.print(f"dropped worker {worker} from job {job} on dataset {dataset_id}; the job is open again")
