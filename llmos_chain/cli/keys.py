"""`llmos keys …`: HPKE encryption key pairs in the keystore (private parts never leave it)."""

from __future__ import annotations

from pathlib import Path

import typer

from llmos_chain.cli.common import JSON, KEYSTORE, existing_keystore, keystore
from llmos_chain.cli.output import console, emit_json, table
from llmos_chain.crypto.kinds import KeyKind

app = typer.Typer(help="Encryption keys (HPKE) for workers and clients; separate from signing keys.", no_args_is_help=True)


@app.command("generate")
def generate(
    name: str = typer.Argument(..., help="A name for the key pair, e.g. worker-1 or client."),
    kind: KeyKind = typer.Option(KeyKind.X25519, "--kind", help="x25519 (default) or mlkem768-x25519 (post-quantum hybrid)."),
    keystore_dir: Path = KEYSTORE,
    json_out: bool = JSON,
) -> None:
    """Generate an encryption key pair into the keystore (file mode 0600) and print its public key."""
    from llmos_chain.crypto.keys import EncryptionKey

    store = keystore(keystore_dir)
    key = EncryptionKey.generate(kind)
    path = store.save_encryption_key(name, key)
    info = {"name": name, "kind": kind.value, "public_key": "0x" + key.public_bytes().hex(), "path": str(path)}
    if json_out:
        emit_json(info)
    else:
        console.print(f"generated {kind.value} key [bold]{name}[/] in {path}")
        console.print(f"public key: {info['public_key'] if kind is KeyKind.X25519 else info['public_key'][:66] + '…'}")


@app.command("list")
def list_keys(keystore_dir: Path = KEYSTORE, json_out: bool = JSON) -> None:
    """List the keystore's encryption keys (names, kinds, public keys); a missing keystore is an error."""
    keys = existing_keystore(keystore_dir).encryption_keys()
    if json_out:
        emit_json({"keys": [{**k, "public": "0x" + k["public"]} for k in keys]})
        return
    table("Encryption keys", ["name", "kind", "public key"], [[k["name"], k["kind"], "0x" + k["public"][:16] + "…"] for k in keys])


@app.command("export")
def export(name: str = typer.Argument(..., help="Key name."), keystore_dir: Path = KEYSTORE, json_out: bool = JSON) -> None:
    """Print a public key in the form WorkerRegistry and JobMarket store (hex)."""
    key = existing_keystore(keystore_dir).load_encryption_key(name)
    public = "0x" + key.public_bytes().hex()
    if json_out:
        emit_json({"name": name, "kind": key.kind.value, "key_kind": key.kind.chain_value, "public_key": public})
    else:
        print(public)
