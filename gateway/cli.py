"""The `verdict` command."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import click

from crypto.errors import KeyFileError
from gateway.cli_admin import admin_group
from gateway.cli_events import events_group
from gateway.cli_executions import executions_group
from gateway.cli_log import LOG_COMMANDS
from gateway.cli_mcp import mcp_group
from gateway.cli_policy import policy_group
from gateway.cli_witness import witness_group
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
    command = click.option(
        "--reuse-port",
        is_flag=True,
        default=None,
        help="Share the port with processes already listening on it (SO_REUSEPORT); without it a"
        " taken port is refused [env VERDICT_REUSE_PORT].",
    )(command)
    seconds = click.FloatRange(min=0)
    header_seconds = click.FloatRange(min=0.001, max=60)  # granian: 1 ms to 60 s
    command = click.option(
        "--header-timeout",
        type=header_seconds,
        default=None,
        help="Seconds for a request's headers [env VERDICT_HEADER_TIMEOUT, 10].",
    )(command)
    command = click.option(
        "--body-timeout",
        type=seconds,
        default=None,
        help="Seconds for a request's body; 0: none [env VERDICT_BODY_TIMEOUT, 30].",
    )(command)
    command = click.option(
        "--keepalive-timeout",
        type=seconds,
        default=None,
        help="Seconds an idle connection stays open; 0: no keep-alive [env VERDICT_KEEPALIVE_TIMEOUT, 5].",
    )(command)
    command = click.option(
        "--max-connections",
        type=click.IntRange(min=1),
        default=None,
        help="Open client connections per worker [env VERDICT_MAX_CONNECTIONS, 512].",
    )(command)
    return command


def _settings(**overrides: object) -> Settings:
    """The environment's settings, with the flags that were given."""
    settings = Settings.from_env()
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


@main.command()
@_serve_options
@click.option("--demo", is_flag=True, help="Seed a demo tenant, policy and agent, and print a walk-through.")
def serve(demo: bool, **options: object) -> None:
    """Run the gateway (SQLite in ./.verdict unless VERDICT_DATABASE_URL says postgresql://…)."""
    _run(_settings(**options), demo=demo)


@main.command()
@_serve_options
def demo(**options: object) -> None:
    """Same as `verdict serve --demo`."""
    _run(_settings(**options), demo=True)


def _run(settings: Settings, *, demo: bool) -> None:
    import shutil

    from gateway.serving import prepare_metrics_dir

    metrics_dir = prepare_metrics_dir(os.environ)  # first: before anything imports prometheus_client
    try:
        _serve(settings, demo=demo)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(settings: Settings, *, demo: bool) -> None:
    from granian import Granian

    from gateway.demo import read_agent_token, seed_demo, walkthrough
    from gateway.demo_rail import execution_walkthrough, seed_demo_rail, start_demo_bank
    from gateway.serving import PortInUse, granian_options, raise_descriptor_limit, verify_port_free

    if not settings.reuse_port:
        try:
            verify_port_free(settings.host, settings.port)
        except PortInUse as exc:
            raise click.ClickException(str(exc)) from exc

    _check_observability(settings)  # a bad metrics token or trace exporter: refused before any worker starts
    keyring = _establish_keys(settings)  # refuses here, before any worker starts
    backend = "PostgreSQL" if settings.database_url else f"SQLite ({settings.data_dir / 'verdict.db'})"
    click.echo(f"Verdict gateway · data dir {settings.data_dir.resolve()} · database {backend}")
    _echo_keys(settings, keyring)
    if not settings.database_url and settings.workers > 1:
        click.echo(
            f"  note: {settings.workers} workers on SQLite take turns on one file lock (correct, but slow"
            " at the tail); use 1 worker with SQLite, or PostgreSQL for several."
        )
    base_url = f"http://{settings.host}:{settings.port}"
    if demo:
        token_path, created = asyncio.run(seed_demo(settings))
        agent_id, _ = read_agent_token(token_path)
        click.echo(
            f"Demo tenant 'demo' {'seeded' if created else 'found'}; agent token in {token_path} (mode 0600)"
        )
        click.echo(walkthrough(base_url, token_path, agent_id))
        _, bank_url, bank_key = start_demo_bank()  # lives as long as this process (issue 12)
        asyncio.run(seed_demo_rail(settings, bank_url, bank_key))
        click.echo(
            f"Demo bank at {bank_url} (the demo tenant's bank_api rail).\n{execution_walkthrough(base_url)}"
        )
    warning = raise_descriptor_limit(settings)
    if warning:
        click.echo(f"  warning: {warning}")
    click.echo(f"Listening on {base_url} · API docs {base_url}/schema · health {base_url}/health")
    os.environ.update(settings.to_env())  # worker processes build their app from these
    # granian forks the workers from this process: importing the app's modules here, once,
    # spares each worker the import (nothing here opens a connection or starts a thread)
    import gateway.app  # noqa: F401

    Granian(
        "gateway.app:create_app_from_env",
        factory=True,
        interface="asgi",
        address=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        respawn_failed_workers=True,
        **granian_options(settings),
    ).serve()


main.add_command(policy_group)
main.add_command(executions_group)
main.add_command(events_group)
main.add_command(admin_group)
main.add_command(witness_group)
main.add_command(mcp_group)


async def _check_witnessed(service, db, tenant: str, policy) -> str:
    """The latest published checkpoint of `tenant` meets `policy` and is the one the log signed at its
    size. Raises `AuditError` (`WitnessPolicyError` when no checkpoint meets it)."""
    from audit.errors import WitnessPolicyError
    from audit.witness_policy import verify_witnessed

    async with db.read() as conn:
        row = await conn.fetchrow(
            "SELECT w.size, w.note, c.root FROM audit_witnessed w JOIN audit_checkpoints c"
            " ON c.tenant_id = w.tenant_id AND c.size = w.size WHERE w.tenant_id = ? ORDER BY w.size DESC LIMIT 1",
            tenant,
        )
    if row is None:
        raise WitnessPolicyError(f"no published checkpoint of {tenant} meets the witness policy")
    witnessed = verify_witnessed(row["note"], policy, service.verifiers(tenant))
    if witnessed.checkpoint.root_hash != bytes(row["root"]):
        raise WitnessPolicyError(
            "the published checkpoint is not the one the log signed",
            expected=bytes(row["root"]).hex(),
            found=witnessed.checkpoint.root_hash.hex(),
        )
    return f", published size {witnessed.checkpoint.size} cosigned by {', '.join(sorted(witnessed.cosigned))}"


@main.group()
def audit() -> None:
    """Audit log tools: verify a proof bundle offline, export bundles, re-check a whole log."""


for _command in LOG_COMMANDS:  # `verdict audit watch`, `verdict audit mirror` (gateway/cli_log.py)
    audit.add_command(_command)


@audit.command("verify")
@click.argument("bundle")
@click.option(
    "--vkey",
    required=True,
    multiple=True,
    help="The log's verifier key, or @FILE holding it; repeat for retired keys after a rotation.",
)
@click.option("--keys", "keys_path", default=None, help="Keys JSON naming the verdict signers (optional).")
@click.option(
    "--policy", "policy_path", default=None, help="c2sp.org/tlog-policy file: witness quorum to require."
)
def audit_verify(bundle: str, vkey: tuple[str, ...], keys_path: str | None, policy_path: str | None) -> None:
    """Verify a proof bundle (verdict-proof/v1 JSON or c2sp.org/tlog-proof text) offline (no server,
    no database): the checkpoint's signature and, with --policy, its witness cosignatures; each
    entry's inclusion, the chain links, and what each entry claims. Exit 0 only if all hold."""
    from audit.cli import verify

    sys.exit(verify(bundle, list(vkey), keys_path, policy_path))


def _database_options(command):
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Keys and SQLite [env VERDICT_DATA_DIR]; VERDICT_DATABASE_URL selects PostgreSQL.",
    )(command)


def _export_options(command):
    command = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)(
        command
    )
    command = click.option(
        "--to", "end", type=int, default=None, help="End of the range (exclusive) [the log's size]."
    )(command)
    command = click.option(
        "--from", "start", type=int, default=0, show_default=True, help="First entry index."
    )(command)
    return click.option("--tenant", required=True)(_database_options(command))


def _export_bundle(tenant: str, start: int, end: int | None, data_dir: Path | None) -> dict:
    """The proof bundle of entries [start, end) of a tenant's log, from its database."""

    async def export(service, db, _settings) -> dict:
        async with db.read() as conn:
            row = await conn.fetchrow("SELECT size FROM audit_heads WHERE tenant_id = ?", tenant)
        if row is None:
            raise click.ClickException(f"tenant {tenant!r} not found")
        stop = int(row["size"]) if end is None else end
        if not 0 <= start < stop <= int(row["size"]):
            raise click.ClickException(f"need 0 <= --from < --to <= {row['size']} (the log's size)")
        return await service.bundle(tenant, range(start, stop), limit=None)

    return _with_audit_service(data_dir, export)


def _write_export(text: str, output: Path | None, what: str) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {what} to {output}", err=True)


@audit.command("export")
@_export_options
def audit_export(
    tenant: str, start: int, end: int | None, output: Path | None, data_dir: Path | None
) -> None:
    """Write a proof bundle of entries [--from, --to) of a tenant's log (checkpointing first if needed)."""
    import json

    bundle = _export_bundle(tenant, start, end, data_dir)
    what = f"{len(bundle['entries'])} entries of {bundle['log']['origin']}"
    _write_export(json.dumps(bundle, indent=1) + "\n", output, what)


@audit.command("export-proof")
@_export_options
def audit_export_proof(
    tenant: str, start: int, end: int | None, output: Path | None, data_dir: Path | None
) -> None:
    """Write the proofs of entries [--from, --to) of a tenant's log in the c2sp.org/tlog-proof text
    format, one per entry, over one checkpoint with its cosignatures (checkpointing first if
    needed): what `GET /v1/actions/{id}/proof?format=tlog-proof` answers for one action's entries.
    `verdict audit verify` reads it."""
    from audit.tlog_proof import format_tlog_proofs

    bundle = _export_bundle(tenant, start, end, data_dir)
    what = f"the proofs of {len(bundle['entries'])} entries of {bundle['log']['origin']}"
    _write_export(format_tlog_proofs(bundle), output, what)


@audit.command("check")
@click.option("--tenant", default=None, help="One tenant [every tenant].")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="c2sp.org/tlog-policy file: the latest published checkpoint must meet its witness quorum.",
)
@_database_options
def audit_check(tenant: str | None, policy_path: Path | None, data_dir: Path | None) -> None:
    """Re-verify whole logs from the database: every entry and link, every checkpoint's signature and
    root, every stored subtree hash, the chain head; with --policy, that the latest published
    checkpoint carries cosignatures meeting the witness quorum. Exit 1 at the first failure."""
    import time

    from audit.errors import AuditError
    from audit.witness_policy import parse_policy

    try:
        policy = parse_policy(policy_path.read_text()) if policy_path else None
    except AuditError as error:
        raise click.ClickException(f"{policy_path}: {error}") from None

    async def check(service, db, _settings) -> bool:
        if tenant is None:
            async with db.read() as conn:
                tenants = [
                    r["tenant_id"]
                    for r in await conn.fetch("SELECT tenant_id FROM audit_heads ORDER BY tenant_id")
                ]
        else:
            tenants = [tenant]
        ok = True
        for name in tenants:
            began = time.perf_counter()
            try:
                report = await service.check_log(name)
                witnessed = "" if policy is None else await _check_witnessed(service, db, name, policy)
            except AuditError as error:
                seq = getattr(error, "seq", None)  # the first entry whose bytes no longer match
                click.echo(f"FAILED {name}{'' if seq is None else f' at entry {seq}'}: {error}", err=True)
                ok = False
                continue
            click.echo(
                f"OK  {name}: {report.size} entries, {report.checkpoints} checkpoints verified,"
                f" root {report.root.hex()}{witnessed} ({time.perf_counter() - began:.1f} s)"
            )
        return ok

    if not _with_audit_service(data_dir, check):
        sys.exit(1)


@main.group()
def keys() -> None:
    """Signing keys: rotate the verdict signer or the log key."""


@keys.command("rotate")
@click.option("--verdict", "kind", flag_value="verdict", help="Rotate the EIP-712 verdict signer.")
@click.option("--log", "kind", flag_value="log", help="Rotate the Ed25519 checkpoint (log) key.")
@_database_options
def keys_rotate(kind: str | None, data_dir: Path | None) -> None:
    """Make a new key active; the old one stays published as retired (with not_after), so what it
    signed still verifies. Every tenant's log records the rotation; running gateways switch within
    a second."""
    from gateway.services.keys import rotate_key

    if kind is None:
        raise click.UsageError("say which key: --verdict or --log")

    async def rotate(service, db, settings):
        return await rotate_key(db, settings.data_dir, kind, settings.log_origin)

    rotation = _with_audit_service(data_dir, rotate, publish=True)
    click.echo(f"rotated the {kind} key; recorded in the logs of {len(rotation.tenants)} tenant(s)")
    click.echo(f"  retired {rotation.retired.public} (not_after {rotation.retired.not_after})")
    where = f"file {rotation.active.file}, mode 0600" if rotation.active.file else "sealed in the database"
    click.echo(f"  active  {rotation.active.public} ({where}) from {rotation.active.not_before}")
    click.echo("  every running gateway switches at that instant")


@keys.command("new-kek")
def keys_new_kek() -> None:
    """Print a new key-encryption key for VERDICT_KEY_ENCRYPTION_KEY: give every host of a
    deployment the same one, and keep it as you keep database credentials."""
    from gateway.sealing import new_kek

    click.echo(new_kek())


@keys.command("admin-token")
@click.option("--reset", is_flag=True, required=True, help="Replace the bootstrap admin token.")
@_database_options
def keys_admin_token(reset: bool, data_dir: Path | None) -> None:
    """Replace the deployment's bootstrap admin token: the new one is written to this host's
    data dir (admin.token, mode 0600, never printed); the old one stops working on every host."""
    from gateway.services.admin_token import reset_admin_token
    from gateway.storage import open_database

    settings = Settings.from_env()
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)

    async def reset_token() -> Path:
        db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema)
        await db.open()
        try:
            return await reset_admin_token(db, settings.data_dir)
        finally:
            await db.close()

    click.echo(f"new admin token in {asyncio.run(reset_token())} (mode 0600); the old one no longer works")


def _check_observability(settings: Settings) -> None:
    """Raises ClickException for a metrics token file the workers would refuse
    (gateway.auth.metrics_token_hash) or trace settings they cannot follow (gateway.telemetry)."""
    from gateway.auth import metrics_token_hash
    from gateway.telemetry import check_env

    try:
        metrics_token_hash(settings.metrics_token_file)
        check_env(os.environ)
    except (KeyFileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _establish_keys(settings: Settings):
    """The published keys, checked against this host's (`gateway.services.published_keys`).
    Raises ClickException with the refusal's paragraph."""
    from gateway.services.published_keys import establish_keys
    from gateway.storage import open_database

    async def establish():
        db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema)
        await db.open()
        try:
            return await establish_keys(db, settings.data_dir, lease=None)
        finally:
            await db.close()

    try:
        return asyncio.run(establish())
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    except (OSError, TimeoutError) as exc:  # unreachable: say so in a line, not a traceback
        raise click.ClickException(f"cannot reach the database to check the signing keys: {exc}") from exc


def _echo_keys(settings: Settings, keyring) -> None:
    from gateway.keyring import LOG
    from gateway.sealing import kek_from_env

    for name, path in keyring.paths.items():
        state = "created" if name in keyring.created else "found"
        click.echo(f"  {name:<12} {path} ({state}, mode 0600)")
    if kek_from_env(os.environ) is not None:
        created = " (created now)" if any("sealed" in c for c in keyring.created) else ""
        click.echo(f"  signing keys sealed in the database under VERDICT_KEY_ENCRYPTION_KEY{created}")
    click.echo(f"  verdict signer address {keyring.verdict_signer.address}")
    click.echo(f"  log key {keyring.active(LOG).public}")
    if keyring.admin_token is not None:
        click.echo(f"  admin token: in {keyring.paths['admin_token']} (never printed)")
    else:
        click.echo(
            "  admin token: held by the host that first started on this database (its admin.token);"
            " replace it with `verdict keys admin-token --reset`"
        )


def _with_audit_service(data_dir: Path | None, work, *, publish: bool = False):
    """Run `work(AuditService, Database, Settings)` against the configured database, with the log keys."""
    from gateway.errors import AppError
    from gateway.keyring import LOG_KEY_FILE, MANIFEST_FILE
    from gateway.sealing import kek_from_env
    from gateway.services.audit import AuditService
    from gateway.services.published_keys import establish_keys
    from gateway.storage import open_database

    settings = Settings.from_env()
    if data_dir is not None:
        settings = dataclasses.replace(settings, data_dir=data_dir)
    try:
        shared = kek_from_env(os.environ) is not None
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from exc
    no_files = (
        not (settings.data_dir / MANIFEST_FILE).exists() and not (settings.data_dir / LOG_KEY_FILE).exists()
    )
    if no_files and not shared:
        raise click.ClickException(
            f"no log key in {settings.data_dir}; pass --data-dir or set VERDICT_DATA_DIR"
            " (or VERDICT_KEY_ENCRYPTION_KEY, when the deployment keeps its keys sealed in the database)"
        )

    async def run():
        db = open_database(settings.database_url, data_dir=settings.data_dir, schema=settings.database_schema)
        await db.open()
        try:
            keyring = await establish_keys(db, settings.data_dir, publish=publish, lease=None)
            service = AuditService(db, keyring.log_key, settings.log_origin, keyring.retired_log_keys())
            return await work(service, db, settings)
        except (AppError, KeyFileError) as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            await db.close()

    return asyncio.run(run())


@keys.command("approver")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
def keys_approver(key_file: Path) -> None:
    """Create an approver's wallet key file (0x + 64 hex, mode 0600) and print its address, for
    approvers without a browser or hardware wallet. Register the address with
    POST /v1/tenants/{tenant}/approvers."""
    from crypto.errors import KeyFileError
    from crypto.keys import generate_secp256k1_key_file
    from crypto.signing import LocalSigner

    try:
        private_key = generate_secp256k1_key_file(key_file)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(LocalSigner(private_key).address)


@main.command()
@click.argument("action_id")
@click.option("--role", required=True, help="The role you approve in (one the action needs and you hold).")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your wallet key: a file of 0x + 64 hex digits, or an eth-account keystore v3 JSON.",
)
@click.option("--passphrase-env", default="VERDICT_KEY_PASSPHRASE", show_default=True,
              help="Environment variable holding a keystore's passphrase (asked for when unset).")  # fmt: skip
@click.option("--reject", is_flag=True, help="Reject the action instead of approving it.")
@click.option("--comment", default=None, help="A note kept with your answer (a reason when rejecting).")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, envvar="VERDICT_URL")
@click.option("--yes", "-y", is_flag=True, help="Sign without asking for confirmation.")
def approve(
    action_id: str,
    role: str,
    key_file: Path,
    passphrase_env: str,
    reject: bool,
    comment: str | None,
    url: str,
    yes: bool,
) -> None:
    """Approve (or --reject) an escalated action by signing its EIP-712 Approval with a wallet key.

    Fetches the action's approval request, shows what you are signing, signs it locally (the key
    never leaves this machine) and sends the signature. Exit 0 when the gateway accepted it."""
    from datetime import UTC, datetime

    from crypto.eip712 import parse_approval_typed_data
    from crypto.errors import CryptoError
    from crypto.signing import sign_approval
    from gateway.cli_http import gateway_errors
    from gateway.client import VerdictClient

    signer = _approver_signer(key_file, passphrase_env)
    with gateway_errors(url), VerdictClient(url) as client:
        typed_data = client.approval_request(action_id, role, approve=not reject)
        try:
            # sign only what reads exactly as an Approval: never whatever a server sends
            domain, message = parse_approval_typed_data(typed_data)
        except CryptoError as exc:
            raise click.ClickException(f"the gateway sent something that is not an Approval: {exc}") from None
        if message.action_id != action_id or message.role != role or message.approve == reject:
            raise click.ClickException("the gateway sent an approval request for something else; not signing")
        click.echo(f"{'REJECT' if reject else 'APPROVE'} as {role}: {message.summary}")
        click.echo(f"  action {message.action_id} of tenant {message.tenant}")
        click.echo(f"  action hash {'0x' + message.action_hash.hex()}")
        ends = datetime.fromtimestamp(message.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"  approval window ends {ends}; chain id {domain.chain_id}")
        click.echo(f"  signer {signer.address}")
        if not yes:
            click.confirm("Sign?", abort=True)
        signature = sign_approval(signer, domain, message).signature
        if reject:
            out = client.reject(action_id, role, signature, reason=comment)
        else:
            out = client.approve(action_id, role, signature, comment=comment)
    click.echo(f"accepted: action {out['action_id']} is {out['status']} ({out['decision']})")
    if out.get("missing"):
        click.echo(f"  still needed: {'; '.join(out['missing'])}")
    if out.get("signed_verdict"):
        click.echo(
            f"  verdict signed by {out['signed_verdict']['signer']}, expires {out['signed_verdict']['expires_at']}"
        )


def _approver_signer(key_file: Path, passphrase_env: str):
    """A LocalSigner from a plain key file or a keystore v3 JSON. Raises ClickException."""
    import json
    import os

    from crypto.errors import KeyFileError
    from crypto.ethaccount import Account
    from crypto.keys import load_secp256k1_key, read_secret_file
    from crypto.signing import LocalSigner

    try:
        raw = read_secret_file(key_file)
        if raw.lstrip().startswith(b"{"):
            passphrase = os.environ.get(passphrase_env)
            if passphrase is None:
                passphrase = click.prompt("Keystore passphrase", hide_input=True)
            try:
                return LocalSigner(bytes(Account.decrypt(json.loads(raw), passphrase)))
            except (ValueError, TypeError, KeyError) as exc:
                raise click.ClickException(f"{key_file}: not a keystore this passphrase opens") from exc
        return LocalSigner(load_secp256k1_key(key_file))
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
