"""Rails: the outside systems an allowed action is executed on (see `gateway.rails.base`).

`KINDS` lists every kind of rail this gateway can run; a tenant configures named rails of these
kinds (`gateway.services.rails`), and the executor (`gateway.services.executor`) drives them.
"""

from __future__ import annotations

from gateway.rails.bank_api import BANK_API
from gateway.rails.base import RailKind
from gateway.rails.smart_account import SMART_ACCOUNT
from gateway.rails.x402 import X402

KINDS: dict[str, RailKind] = {BANK_API.name: BANK_API, SMART_ACCOUNT.name: SMART_ACCOUNT, X402.name: X402}

__all__ = ["KINDS"]
