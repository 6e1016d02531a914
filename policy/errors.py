"""Errors raised by the ``policy`` package.

Every failure here is a :class:`PolicyError`. A document that cannot be parsed
or does not validate raises :class:`PolicyInvalid`, which carries *every*
problem found (each with a path into the document and the rule it belongs to),
so an author can fix them all in one round. Evaluation never raises: a rule
that cannot be evaluated becomes a DENY with reason ``policy_error:<rule id>``
(see :mod:`policy.evaluate`); :class:`RuleEvaluationError` only travels inside
the evaluator.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "DocumentUnreadable",
    "PolicyError",
    "PolicyInvalid",
    "Problem",
    "RuleEvaluationError",
    "UnsupportedMediaType",
]


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with a policy document.

    ``path`` points into the document as the author wrote it, e.g.
    ``rules[1].match.action.amount.gt`` (rule indexes are 0-based; ``""`` is the
    document itself). ``rule`` is the id of the rule the problem sits in, when
    that rule has a usable string id.
    """

    path: str
    message: str
    rule: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """Return ``{"path", "rule", "message"}`` for a problem+json body."""
        return {"path": self.path, "rule": self.rule, "message": self.message}


class PolicyError(Exception):
    """Root of every error raised by ``policy``."""


class PolicyInvalid(PolicyError):
    """A policy document cannot be parsed or does not validate.

    ``problems`` lists every problem found, in document order; parse errors
    (bad JSON or YAML) stop early and yield exactly one problem at path ``""``.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        first = self.problems[0] if self.problems else None
        summary = f"{first.path or '(document)'}: {first.message}" if first else "no details"
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"policy is invalid ({count} {noun}); first: {summary}")


class DocumentUnreadable(PolicyInvalid):
    """The body could not be read as a document at all: one problem at path ``""``.

    ``kind`` says why, as a stable snake_case word a caller may map to its own error
    code: ``invalid_utf8``, ``invalid_syntax``, ``duplicate_key``, ``nesting_too_deep``,
    ``invalid_number`` (NaN, Infinity), ``yaml_alias`` (anchors and aliases) or ``yaml_tag``
    (explicit tags such as ``!!binary`` or ``!!merge``).
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__([Problem(path="", message=message)])


class UnsupportedMediaType(PolicyError):
    """A policy was offered in a media type this package cannot read."""

    def __init__(self, media_type: str, supported: tuple[str, ...]) -> None:
        self.media_type = media_type
        self.supported = supported
        super().__init__(
            f"unsupported policy media type {media_type!r}; expected one of {', '.join(supported)}"
        )


class RuleEvaluationError(PolicyError):
    """A rule could not be evaluated against a request (missing field, bad value, CEL failure).

    Never escapes :meth:`policy.evaluate.CompiledPolicy.evaluate`, which turns it
    into a DENY. ``condition`` is the explain-trace line of the failing condition.
    """

    def __init__(self, message: str, condition: str = "") -> None:
        self.message = message
        self.condition = condition
        super().__init__(message)
