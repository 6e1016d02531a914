"""The `verdict` command."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import click

from crypto.errors import KeyFileError
from gateway.settings import Settings


@click.group()
@click.version_option(package_name="verdict-gateway", prog_name="verdict")
def main() -> None:
    """Verdict: a signed-verdict policy gateway for autonomous agents."""


def _serve_options(command):
    command = click.option("--host", default=None, help="Listen address [env VERDICT_HOST, 127.0.0.1].")(
        command
    )
    command = click.option("--port", type=int, default=None, help="Port [env VERDICT_PORT, 8000].")(command)
    command = click.option(
        "--workers", type=int, default=None, help="Worker processes [env VERDICT_WORKERS, 1]."
    )(command)
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Keys and SQLite [env VERDICT_DATA_DIR].",
    )(command)
    return command


@main.command()
@_serve_options
@click.option("--demo", is_flag=True, help="Seed a demo tenant, policy and agent, and print a walk-through.")
def serve(host: str | None, port: int | None, workers: int | None, data_dir: Path | None, demo: bool) -> None:
    """Run the gateway (SQLite in ./.verdict unless VERDICT_DATABASE_URL says postgresql://…)."""
    settings = Settings.from_env()
    overrides = {"host": host, "port": port, "workers": workers, "data_dir": data_dir}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    _run(settings, demo=demo)


@main.command()
@_serve_options
def demo(host: str | None, port: int | None, workers: int | None, data_dir: Path | None) -> None:
    """Same as `verdict serve --demo`."""
    settings = Settings.from_env()
    overrides = {"host": host, "port": port, "workers": workers, "data_dir": data_dir}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    _run(settings, demo=True)


def _run(settings: Settings, *, demo: bool) -> None:
    from granian import Granian

    from gateway.demo import read_agent_token, seed_demo, walkthrough
    from gateway.keyring import load_keyring

    try:
        keyring = load_keyring(settings.data_dir)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    backend = "PostgreSQL" if settings.database_url else f"SQLite ({settings.data_dir / 'verdict.db'})"
    click.echo(f"Verdict gateway · data dir {settings.data_dir.resolve()} · database {backend}")
    for name, path in keyring.paths.items():
        state = "created" if name in keyring.created else "found"
        click.echo(f"  {name:<12} {path} ({state}, mode 0600)")
    click.echo(f"  verdict signer address {keyring.verdict_signer.address}")
    if not settings.database_url and settings.workers > 1:
        click.echo(
            f"  note: {settings.workers} workers on SQLite take turns on one file lock (correct, but slow"
            " at the tail); use 1 worker with SQLite, or PostgreSQL for several."
        )
    click.echo(f"  admin token: in {keyring.paths['admin_token']} (never printed)")
    base_url = f"http://{settings.host}:{settings.port}"
    if demo:
        token_path, created = asyncio.run(seed_demo(settings))
        agent_id, _ = read_agent_token(token_path)
        click.echo(
            f"Demo tenant 'demo' {'seeded' if created else 'found'}; agent token in {token_path} (mode 0600)"
        )
        click.echo(walkthrough(base_url, token_path, agent_id))
    click.echo(f"Listening on {base_url} · API docs {base_url}/schema · health {base_url}/health")
    os.environ.update(settings.to_env())  # worker processes build their app from these
    Granian(
        "gateway.app:create_app_from_env",
        factory=True,
        interface="asgi",
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        respawn_failed_workers=True,
    ).serve()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
