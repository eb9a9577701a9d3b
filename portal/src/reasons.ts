// What each failure reason means, in words a person can act on.

const REASONS: Record<string, string> = {
  auth_missing: "the provider's credentials are not configured on the executor",
  auth_invalid: "the provider refused the credentials",
  rate_limited: "the provider's rate limit or quota was hit",
  timeout: "the run took longer than its time limit",
  provider_no_output: "the provider produced no output in time",
  provider_error: "the provider reported an error",
  provider_crashed: "the provider's process crashed",
  binary_missing: "no executor has this provider's CLI installed",
  unsupported_provider: "no executor offers this provider",
  executor_lost: "the executor running it was lost",
  stopped: "someone stopped it",
  unknown_failure: "it failed in a way not classified; see the evidence",
  budget_exceeded: "it went over its budget",
};

export function describeReason(reason: string): string {
  const text = REASONS[reason];
  return text ? `(${text})` : "";
}
