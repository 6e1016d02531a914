"""`verdict witness keygen | serve`: run a c2sp.org/tlog-witness witness (the `witness` package, also
`python -m witness` where only `audit` and `crypto` are installed), e.g. on an auditor's machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("witness")
def witness_group() -> None:
    """A transparency-log witness (c2sp.org/tlog-witness): cosigns checkpoints it verified."""


@witness_group.command("keygen")
@click.option("--key", "key_path", type=click.Path(path_type=Path), required=True, help="PEM file to create")
@click.option("--name", required=True, help="the witness's key name, e.g. witness.example.org/alice")
def keygen(key_path: Path, name: str) -> None:
    """Create the witness's Ed25519 key and print its cosigner vkey (for policies)."""
    from witness.cli import UsageError, keygen

    try:
        click.echo(keygen(key_path, name))
    except UsageError as error:
        raise click.ClickException(str(error)) from None


@witness_group.command("serve")
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--name", required=True, help="the key name given to keygen")
@click.option("--logs", "logs_path", type=click.Path(path_type=Path, exists=True), required=True,
              help="file of 'log <vkey>' lines: the logs to witness (re-read when it changes)")  # fmt: skip
@click.option("--state", "state_path", type=click.Path(path_type=Path), required=True,
              help="SQLite file: the latest cosigned checkpoint per log")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7380, show_default=True, help="0: any free port")
def serve(key_path: Path, name: str, logs_path: Path, state_path: Path, host: str, port: int) -> None:
    """Answer POST /add-checkpoint until interrupted."""
    import logging

    from witness.cli import UsageError, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        serve(key_path, name, logs_path, state_path, host, port)
    except UsageError as error:
        raise click.ClickException(str(error)) from None
