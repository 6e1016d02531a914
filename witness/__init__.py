"""A transparency-log witness (c2sp.org/tlog-witness) an auditor runs on their own machine.

It imports only `audit`, `crypto` and the standard library, so it runs without the gateway's
dependencies: `witness.state` keeps the latest cosigned checkpoint per log in a SQLite file,
`witness.server` answers `POST /add-checkpoint`.
"""
