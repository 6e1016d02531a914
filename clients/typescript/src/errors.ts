/**
 * Errors: one root (`VerdictError`), `GatewayError` for every refusal the gateway answers as
 * RFC 9457 problem+json (typed by its stable `code`), a subclass per HTTP family, and
 * `VerdictInvalid` for a signed verdict that must not be acted on.
 */

/** The stable `code` of a gateway problem (docs/api.md); other strings may appear in later versions. */
export type ProblemCode =
  | "action_not_found"
  | "action_not_allowed"
  | "action_not_pending"
  | "agent_not_found"
  | "already_answered"
  | "already_executed"
  | "already_executing"
  | "amount_not_string"
  | "approval_pending"
  | "approval_window_expired"
  | "body_too_large"
  | "duplicate_key"
  | "execution_not_found"
  | "execution_not_succeeded"
  | "float_not_allowed"
  | "forbidden_role"
  | "idempotency_conflict"
  | "invalid_action"
  | "invalid_address"
  | "invalid_amount"
  | "invalid_idempotency_key"
  | "invalid_json"
  | "invalid_parameters"
  | "invalid_reason"
  | "invalid_request"
  | "invalid_signature"
  | "invalid_token"
  | "missing_credentials"
  | "not_an_approver"
  | "not_executed"
  | "not_reversible"
  | "payment_unmappable"
  | "rail_not_allowed"
  | "rail_not_configured"
  | "rail_required"
  | "rate_limited"
  | "role_not_held"
  | "role_not_required"
  | "rollback_in_progress"
  | "signature_mismatch"
  | "signer_unavailable"
  | "tenant_not_found"
  | "token_expired"
  | "unknown_field"
  | "verdict_expired"
  | "verdict_not_available"
  | (string & {});

/** An RFC 9457 problem document as the gateway sends it. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code: ProblemCode;
  request_id?: string;
  [member: string]: unknown;
}

/** The root of every error this package throws. */
export class VerdictError extends Error {
  override name = "VerdictError";
}

/** The gateway refused a request; `code` is the problem's stable code. */
export class GatewayError extends VerdictError {
  override name = "GatewayError";
  readonly status: number;
  readonly code: ProblemCode;
  readonly detail: string;
  readonly requestId: string | undefined;
  readonly problem: Problem;

  constructor(status: number, problem: Problem) {
    super(`${status} ${problem.code}: ${problem.detail ?? problem.title ?? ""}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code;
    this.detail = problem.detail ?? "";
    this.requestId = problem.request_id;
  }

  /** Whether retrying the same request later may succeed (429, 502, 503, 504). */
  get retryable(): boolean {
    return RETRYABLE.has(this.status);
  }
}

/** 400 and 422: the request itself is wrong (`invalid_request`, `float_not_allowed`, ...). */
export class InvalidRequestError extends GatewayError {
  override name = "InvalidRequestError";
}
/** 401: no credential, or one that is unknown, revoked or expired. */
export class UnauthenticatedError extends GatewayError {
  override name = "UnauthenticatedError";
}
/** 403: the credential's role may not do this (`forbidden_role`), or the signer may not (`not_an_approver`). */
export class ForbiddenError extends GatewayError {
  override name = "ForbiddenError";
}
/** 404: no such object, or another tenant's (they look the same). */
export class NotFoundError extends GatewayError {
  override name = "NotFoundError";
}
/** 409: the object's state forbids it now (`verdict_expired`, `action_not_pending`, `already_executed`, ...). */
export class ConflictError extends GatewayError {
  override name = "ConflictError";
}
/** 429: over a rate limit; `retryAfterSeconds` from the `Retry-After` header. */
export class RateLimitedError extends GatewayError {
  override name = "RateLimitedError";
  retryAfterSeconds: number | undefined;
}
/** 5xx: a failure outside the request (database, bank, chain); 502-504 are retryable. */
export class UnavailableError extends GatewayError {
  override name = "UnavailableError";
}

export const RETRYABLE: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** The error for a refusal, by HTTP status. */
export function gatewayError(status: number, problem: Problem, retryAfter?: string | null): GatewayError {
  if (status === 400 || status === 413 || status === 415 || status === 422) return new InvalidRequestError(status, problem);
  if (status === 401) return new UnauthenticatedError(status, problem);
  if (status === 403) return new ForbiddenError(status, problem);
  if (status === 404) return new NotFoundError(status, problem);
  if (status === 409) return new ConflictError(status, problem);
  if (status === 429) {
    const error = new RateLimitedError(status, problem);
    const seconds = retryAfter == null ? NaN : Number(retryAfter);
    error.retryAfterSeconds = Number.isFinite(seconds) ? seconds : undefined;
    return error;
  }
  if (status >= 500) return new UnavailableError(status, problem);
  return new GatewayError(status, problem);
}

/** Narrow an unknown error to a gateway refusal with this `code`. */
export function isProblem<C extends ProblemCode>(error: unknown, code: C): error is GatewayError & { code: C } {
  return error instanceof GatewayError && error.code === code;
}

/** Why a signed verdict must not be acted on (the step of `verifyVerdict` that failed). */
export type VerdictProblem =
  | "typed_data"
  | "signature"
  | "unknown_signer"
  | "retired_signer"
  | "not_allow"
  | "action_hash"
  | "expired"
  | "not_yet_valid";

/** A signed verdict that must not be acted on; `reason` says which check failed. */
export class VerdictInvalid extends VerdictError {
  override name = "VerdictInvalid";
  readonly reason: VerdictProblem;

  constructor(reason: VerdictProblem, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** `waitForApproval` / `waitForExecution` gave up; the action or execution goes on. */
export class WaitTimeout extends VerdictError {
  override name = "WaitTimeout";
}
