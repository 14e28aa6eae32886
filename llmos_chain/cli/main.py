"""Entry point of `llmos`. Every LlmosError becomes a one-line message and a non-zero exit."""

from __future__ import annotations

import sys

import typer

from llmos_chain import __version__
from llmos_chain.cli import agent, arbiter, audit, bench, chain, coordinator, dataset, demo, devnet, hashes, job, keys, serve, verify
from llmos_chain.cli.output import error
from llmos_chain.errors import LlmosError

app = typer.Typer(
    name="llmos",
    help="llmos-chain: an auditable marketplace for private LLM fine-tuning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo", help=demo.demo.__doc__)(demo.demo)
app.command("audit", help=audit.audit.__doc__)(audit.audit)
app.command("deploy", help=chain.deploy.__doc__)(chain.deploy)
app.command("devnet", help=devnet.devnet.__doc__)(devnet.devnet)
app.command("serve", help=serve.serve.__doc__)(serve.serve)
app.command("verify", help=verify.verify.__doc__)(verify.verify)
app.add_typer(job.app, name="job")
app.add_typer(agent.app, name="agent")
app.add_typer(arbiter.app, name="arbiter")
app.add_typer(coordinator.app, name="coordinator")
app.add_typer(dataset.app, name="dataset")
app.add_typer(keys.app, name="keys")
app.add_typer(bench.app, name="bench")
app.add_typer(hashes.recipe_app, name="recipe")
app.add_typer(hashes.model_app, name="model")


def _version(value: bool) -> None:
    if value:
        print(f"llmos-chain {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """llmos-chain: escrowed fine-tuning jobs, sealed datasets, attested results, audited on-chain."""


def main() -> None:
    # Standalone mode lets typer handle usage errors (exit 2) and --help; library errors end here.
    try:
        app()
    except LlmosError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        error("interrupted")
        sys.exit(130)
    except Exception as exc:  # the node failed past the transport's retries: one line, not a traceback
        if not (isinstance(exc, OSError) or type(exc).__module__.startswith(("web3", "requests", "urllib3"))):
            raise
        error(f"the node failed to answer (after retries): {type(exc).__name__}: {str(exc)[:300]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
