"""Publishing checkpoints under a witness quorum (c2sp.org/tlog-witness, c2sp.org/tlog-policy).

With a witness policy configured (`VERDICT_WITNESS_POLICY`), a tenant's signed checkpoint is only
published (on `…/log/checkpoint`, `…/audit/checkpoint` and in proof bundles) once the policy's
quorum of witnesses cosigned it. One round, for one tenant:

1. take the latest signed checkpoint; stop if it is already published;
2. ask every witness not in back-off, concurrently: `POST <url>/add-checkpoint` with the size that
   witness last cosigned (learnt from its 409 `text/x.tlog.size` answers, 0 at first) and the
   consistency proof from that size (read once per round and size, however many witnesses share it);
3. keep each cosignature that verifies under the witness's key in the policy;
4. if the cosigners meet the quorum, store the checkpoint with the cosignatures appended.

A witness that is down or refuses is retried with exponential back-off and named in `/health`
while the quorum is not met; appending entries never waits for witnesses (only publishing does):
rounds run in a background task (`run`) that holds neither the chain writer nor the log's
integration lock while it waits for witnesses. Each attempt and round is counted in
`gateway.metrics` (by witness and outcome; published or held).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from dataclasses import dataclass

import httpx

from audit.cosignature import verify_cosignatures
from audit.errors import AuditError
from audit.note import open_note
from audit.witness_policy import WitnessEntry, WitnessPolicy
from gateway import metrics
from gateway.clock import rfc3339, utc_now
from gateway.health import HealthProblem
from gateway.services.audit import AuditService, StoredCheckpoint

log = logging.getLogger("verdict.witnessing")

TIMEOUT_SECONDS = 5.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
SIZE_TYPE = "text/x.tlog.size"
# Logs whose latest signed checkpoint (the tree head's size) is beyond their newest witnessed one.
_BEHIND = (
    "SELECT t.tenant_id FROM audit_tree_heads t WHERE t.size > COALESCE("
    "(SELECT w.size FROM audit_witnessed w WHERE w.tenant_id = t.tenant_id ORDER BY w.size DESC LIMIT 1), -1)"
)


@dataclass(slots=True)
class WitnessTrouble:
    """Why a witness gave no cosignature lately, and when to ask it again."""

    code: str
    detail: str
    failures: int
    retry_at: float


class WitnessFailed(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class WitnessingService:
    """Asks the policy's witnesses for cosignatures. One per process; safe for the tasks of one loop."""

    def __init__(
        self, audit: AuditService, policy: WitnessPolicy, *, timeout: float = TIMEOUT_SECONDS
    ) -> None:
        missing = [name for name, w in policy.witnesses.items() if not w.url]
        if missing:
            raise ValueError(f"witness policy: witnesses {missing} have no URL to reach them at")
        self.audit, self.db, self.policy = audit, audit.db, policy
        self._http = httpx.AsyncClient(timeout=timeout)
        self._sizes: dict[tuple[str, str], int] = {}  # (tenant, witness) -> size it last cosigned
        self.trouble: dict[str, WitnessTrouble] = {}  # witness -> its latest failure
        self.waiting: dict[str, int] = {}  # tenant -> signed size that did not meet the quorum
        self.cosignatures = 0  # gathered, for metrics
        self._locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self._http.aclose()

    async def published(self, tenant: str) -> StoredCheckpoint | None:
        """The latest checkpoint published under the quorum, or None."""
        async with self.db.read() as conn:
            row = await conn.fetchrow(
                "SELECT size, root, note FROM audit_witnessed WHERE tenant_id = ? ORDER BY size DESC LIMIT 1",
                tenant,
            )
        return StoredCheckpoint(int(row["size"]), bytes(row["root"]), row["note"]) if row else None

    async def witness(self, tenant: str) -> StoredCheckpoint | None:
        """One round for `tenant` (steps 1-4 above); returns the latest published checkpoint.

        Raises NotFound, `LogIntegrityError`, Unavailable from reading the log; never for witnesses."""
        async with self._locks.setdefault(tenant, asyncio.Lock()):
            # (1) the latest signed checkpoint, unless it is published already
            signed = await self.audit.latest(tenant)
            published = await self.published(tenant)
            if signed is None or (published is not None and published.size >= signed.size):
                return published
            # (2)-(3) every witness out of back-off, concurrently
            now = time.monotonic()
            asked = [w for name, w in self.policy.witnesses.items() if self._due(name, now)]
            proofs: dict[int, asyncio.Task[list[bytes]]] = {}  # old size -> its proof, this round
            lines = await asyncio.gather(*(self._cosign(tenant, w, signed, proofs) for w in asked))
            gathered = {w.name: line for w, line in zip(asked, lines, strict=True) if line}
            # (4) publish under the quorum
            if not self.policy.satisfied_by(set(gathered)):
                self.waiting[tenant] = signed.size
                metrics.WITNESSED_CHECKPOINTS.labels("held").inc()
                return published
            note = signed.note + "".join(gathered[name] for name in sorted(gathered))
            async with self.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO audit_witnessed (tenant_id, size, root, note, created_at) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    tenant,
                    signed.size,
                    signed.root,
                    note,
                    rfc3339(utc_now()),
                )
            self.waiting.pop(tenant, None)
            metrics.WITNESSED_CHECKPOINTS.labels("published").inc()
            return await self.published(tenant)

    def _due(self, name: str, now: float) -> bool:
        trouble = self.trouble.get(name)
        return trouble is None or trouble.retry_at <= now

    async def _cosign(
        self, tenant: str, witness: WitnessEntry, signed: StoredCheckpoint, proofs: dict[int, asyncio.Task]
    ) -> str | None:
        """The witness's verified cosignature line(s) on `signed`, or None (its trouble recorded)."""
        began = time.perf_counter()
        try:
            line = await self._ask(tenant, witness, signed, proofs)
        except WitnessFailed as failed:
            metrics.count_witness_request(witness.name, failed.code, time.perf_counter() - began)
            previous = self.trouble.get(witness.name)
            failures = previous.failures + 1 if previous else 1
            delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (failures - 1))
            self.trouble[witness.name] = WitnessTrouble(
                failed.code, str(failed), failures, time.monotonic() + delay
            )
            if failures == 1:
                log.warning("witness %s: %s (%s); retrying with back-off", witness.name, failed, failed.code)
            return None
        metrics.count_witness_request(witness.name, None, time.perf_counter() - began)
        if self.trouble.pop(witness.name, None) is not None:
            log.info("witness %s cosigns again", witness.name)
        self.cosignatures += 1
        return line

    async def _ask(
        self, tenant: str, witness: WitnessEntry, signed: StoredCheckpoint, proofs: dict[int, asyncio.Task]
    ) -> str:
        """Raises `WitnessFailed` when the witness is unreachable, refuses, or answers nonsense;
        what reading the proof raises (NotFound, `LogIntegrityError`, Unavailable)."""
        key = (tenant, witness.name)
        for _ in range(2):  # a 409 names the size it holds: ask once more from there (§add-checkpoint)
            old = self._sizes.get(key, 0)
            if old > signed.size:
                raise WitnessFailed(
                    "witness_ahead", f"it cosigned size {old}, beyond the log's {signed.size}"
                )
            proof = await self._proof(tenant, old, signed.size, proofs) if old else []
            body = f"old {old}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
            try:
                r = await self._http.post(
                    witness.url.rstrip("/") + "/add-checkpoint", content=body + "\n" + signed.note
                )
            except httpx.HTTPError as error:
                raise WitnessFailed("witness_unreachable", f"{type(error).__name__}: {error}") from None
            if r.status_code == 409 and r.headers.get("content-type", "").startswith(SIZE_TYPE):
                text = r.text.strip()
                if not text.isdigit() or int(text) == old:
                    raise WitnessFailed(
                        "witness_conflict", f"409 with size {text[:30]!r}: it holds another tree"
                    )
                self._sizes[key] = int(text)
                continue
            if r.status_code != 200:
                raise WitnessFailed("witness_refused", f"{r.status_code}: {r.text[:200]}")
            return self._verified(witness, signed, r.text, key)
        raise WitnessFailed("witness_conflict", "its size changed twice while asking")

    async def _proof(self, tenant: str, old: int, size: int, proofs: dict[int, asyncio.Task]) -> list[bytes]:
        """The consistency proof from `old` to `size`, read once for the round's witnesses that
        last cosigned `old` (a task they share, so the first to ask reads it and the others wait)."""
        task = proofs.get(old)
        if task is None:
            task = proofs[old] = asyncio.ensure_future(self.audit.consistency_proof(tenant, old, size))
            task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
        return await asyncio.shield(task)

    def _verified(
        self, witness: WitnessEntry, signed: StoredCheckpoint, answer: str, key: tuple[str, str]
    ) -> str:
        lines = [line + "\n" for line in answer.split("\n") if line.startswith("— ")]
        try:  # §add-checkpoint: append the answer to the checkpoint and verify it as a note
            note = open_note(signed.note + "".join(lines), self.audit.verifiers(key[0]))
            cosigned = verify_cosignatures(note, [witness.cosigner])
        except AuditError as error:
            raise WitnessFailed("witness_bad_cosignature", str(error)) from None
        if witness.cosigner.name not in cosigned:
            raise WitnessFailed("witness_bad_cosignature", "no cosignature by the key the policy names")
        self._sizes[key] = signed.size
        prefix = f"— {witness.cosigner.name} "
        return "".join(line for line in lines if line.startswith(prefix))

    async def run(self, interval: float) -> None:
        """Witness every tenant whose latest signed checkpoint is not published, every `interval`.

        The tenants are read from the tree heads (one row per log, the size of its latest signed
        checkpoint) against the newest witnessed size: index lookups, however long the logs' history
        of checkpoints. One tenant's failure never holds up the others'.

        Every worker process runs rounds; each starts at a random point of the interval, so the
        workers' rounds fall at different moments and a round finds the checkpoint another worker
        just published (step 1) instead of asking the witnesses again (two rounds that overlap
        still both ask: a witness answers the second with 409, and nothing is published twice)."""
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.db.read() as conn:
                    rows = await conn.fetch(_BEHIND)
            except Exception:  # an outage: logged by the storage layer; try next round
                log.debug("witnessing round failed", exc_info=True)
                continue
            for row in rows:
                try:
                    await self.witness(row["tenant_id"])
                except Exception:  # an outage or a broken log: logged where raised; try next round
                    log.debug("witnessing %s failed", row["tenant_id"], exc_info=True)

    async def health(self) -> HealthProblem | None:
        """A problem while a tenant's checkpoint waits for a quorum: which witnesses fail, and why."""
        if not self.waiting:
            return None
        failing = ", ".join(f"{name} ({t.code}: {t.detail[:80]})" for name, t in sorted(self.trouble.items()))
        detail = f"checkpoints of {len(self.waiting)} log(s) wait for the witness quorum; failing: {failing or 'none'}"
        return HealthProblem("witnesses", "witness_quorum_unmet", detail)
