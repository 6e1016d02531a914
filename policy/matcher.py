"""A compiled ``match``/``when`` pair, shared by rules, risk factors and limits, and its evaluation.

(1) The ``match`` conditions run in order; a false one stops the matcher. One
    that cannot be evaluated records an error and the rest still run (they
    combine like CEL's ``&&``: a false condition wins over an error).
(2) ``when`` runs only if no condition was false, in a CEL context built once
    per evaluation, on the first ``when`` that needs it.
(3) The matcher *matches* when nothing was false; it is *in error* when it
    matches and something failed to evaluate.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from policy.cel_env import CelScope, Expression, run_expression
from policy.decision import EvaluationInput
from policy.document import ROOTS
from policy.errors import RuleEvaluationError
from policy.values import MISSING, render_value

__all__ = ["EvaluationState", "Matcher", "describe_when"]


class EvaluationState:
    """What one evaluation computes at most once: the CEL context, built on the first ``when``,
    (explain on) each field's rendering for the trace, in ``shown``, and each distinct ``match``
    condition's outcome, in ``memo`` (indexed by the slot the compiler gave it; ``None`` until it
    ran): a bool with explain off, ``(holds, trace line)`` with it on (one evaluation runs only
    one kind). A condition that raised is not kept: it runs, and raises, again. Nothing here
    outlives the evaluation.

    The context holds the derived roots (risk, classification) as they are when
    it is built; :meth:`forget_context` drops it once risk is known, so rules see it.
    :meth:`set_risk` sets the risk root and forgets what ``shown`` holds of it.
    """

    __slots__ = ("_context", "_scope", "classification", "memo", "request", "roots", "shown")

    def __init__(
        self, request: EvaluationInput, scope: CelScope, roots: tuple[Any, ...], slots: int = 0
    ) -> None:
        self.request = request
        self.roots = roots
        self.shown: dict[str, tuple[Any, str]] = {}
        self.memo: list[Any] = [None] * slots
        self.classification: Any = None
        self._scope = scope
        self._context: Any = None

    def set_risk(self, risk: dict[str, Any]) -> None:
        """Set the ``risk`` root, once the factors scored the request (rules and limits read it)."""
        roots = self.roots
        self.roots = (roots[0], roots[1], roots[2], risk, roots[4], roots[5])
        self.shown = {head: seen for head, seen in self.shown.items() if not head.startswith("risk.")}

    def context(self) -> Any:
        """The CEL context, or the RuleEvaluationError that building it raised."""
        if self._context is None:
            request, roots = self.request, self.roots
            try:
                self._context = self._scope.build_context(
                    request.action,
                    request.agent,
                    request.tenant,
                    request.now,
                    extra={"risk": roots[3], "classification": roots[4], "context": roots[5]},
                )
            except RuleEvaluationError as failure:
                self._context = failure
        return self._context

    def check_when(self, expression: Expression) -> bool | str:
        """Run a ``when``: natively when it has a native form and the context holds no request
        data (see :mod:`policy.native_when`), else in the CEL context; see :func:`check_when`."""
        native = expression.native
        if native is not None and not self._scope.reads_request_data:
            request = self.request
            outcome = native(request.now, request.tenant)
            if outcome is not None:
                return outcome
        return check_when(expression, self.context())

    def forget_context(self) -> None:
        self._context = None


@dataclass(frozen=True, slots=True)
class Matcher:
    """``match`` conditions (fast tests and tracing conditions) and an optional ``when``."""

    tests: tuple[Any, ...]
    conditions: tuple[Any, ...]
    when: Expression | None

    def run(self, state: EvaluationState, trace: list[str] | None) -> tuple[bool, str | None]:
        """Return ``(matched, error)``; append a line per condition to ``trace`` unless it is ``None``."""
        roots = state.roots
        memo = state.memo
        error = None
        if trace is None:
            for slot, test in self.tests:  # (1)
                holds = memo[slot]
                if holds is None:
                    try:
                        holds = memo[slot] = test(roots)
                    except RuleEvaluationError as failure:
                        error = error or failure.message
                        continue
                if not holds:
                    return False, None
        else:
            shown = state.shown
            for slot, condition in self.conditions:
                outcome = memo[slot]
                if outcome is None:
                    try:
                        outcome = memo[slot] = condition(roots, shown)
                    except RuleEvaluationError as failure:
                        trace.append(failure.condition)
                        error = error or failure.message
                        continue
                trace.append(outcome[1])
                if not outcome[0]:
                    return False, None
        if self.when is not None:  # (2)
            outcome = state.check_when(self.when)
            if trace is not None:
                head = describe_when(self.when, roots, state.request.now)
                if type(outcome) is bool:
                    trace.append(head + (": matched" if outcome else ": not matched"))
                else:
                    trace.append(f"{head}: error: {outcome}")
            if type(outcome) is bool:
                if not outcome:
                    return False, None
            else:
                error = error or outcome
        return True, error  # (3)


def describe_when(expression: Expression, roots: tuple[Any, ...], now: Any) -> str:
    """The head of a ``when`` trace line: its source and the values it reads, e.g.
    ``when action.amount > "5000" [action.amount "7800.00"]``."""
    source = expression.source if len(expression.source) <= 120 else expression.source[:117] + "..."
    shown = []
    for root, keys in expression.reads.items():
        if root == "lists":
            continue
        value = roots[ROOTS.index(root)]
        if keys is None:
            shown.append(f"{root} {render_value(value)}")
            continue
        for key in sorted(keys):
            item = value.get(key, MISSING) if isinstance(value, dict) else MISSING
            shown.append(f"{root}.{key} {render_value(item)}")
    if expression.reads_now and isinstance(now, datetime.datetime):
        shown.append(f"now {now.isoformat()}")
    return f"when {source}" + (f" [{', '.join(shown)}]" if shown else "")


def check_when(expression: Expression, context: Any) -> bool | str:
    """Run a ``when``: its bool result, or the message saying why it failed."""
    if isinstance(context, RuleEvaluationError):
        return context.message
    try:
        return run_expression(expression, context)
    except RuleEvaluationError as failure:
        return failure.message
