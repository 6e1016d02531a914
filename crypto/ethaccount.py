"""eth-account, imported with the interpreter's recursion limit kept.

py_ecc (which eth-account imports, through eth-keyfile's BLS keystores) raises the recursion
limit to 100000 at import time. With that limit, C-recursive parsers (json, msgspec, cel)
overflow the C stack on deeply nested input and the process dies with SIGSEGV instead of
raising RecursionError. Import eth-account (and web3, which imports it) through this module,
which restores the limit the interpreter had.

It is not imported by :mod:`crypto` itself: importing eth-account costs about half a second,
which commands and libraries that never verify a typed-data signature (the witness, the admin
CLI, the log verifier's proofs) need not pay. :mod:`crypto.signing` imports it on its first
verification.
"""

import sys as _sys

_recursion_limit = _sys.getrecursionlimit()
try:
    from eth_account import Account
    from eth_account.messages import encode_typed_data
finally:
    _sys.setrecursionlimit(_recursion_limit)

__all__ = ["Account", "encode_typed_data"]
