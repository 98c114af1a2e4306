#pragma once
// Retry decisions for one request (config::RetryPolicy, config::RetryBudget), kept apart from the
// exchange loops so they can be read and tested on their own. Envoy's semantics: "5xx" covers
// every upstream failure the proxy would answer with 5xx (connect failure, reset, per-try timeout,
// bad response) and 5xx responses; "gateway-error" the same, but only 502/503/504 responses; the
// route's total timeout is never retried.

#include <chrono>
#include <cstdint>
#include <string_view>

#include "config/config.h"
#include "filters/stream.h"

namespace sidetrace::proxy {

// A failed attempt (no response head). `per_try_timeout`: it was the per-try deadline that ended
// it (a Timeout from the route's own deadline is not retriable).
bool retriableFailure(const config::RetryPolicy& p, filters::UpstreamResult::Error e,
                      bool per_try_timeout);
// A response head the client has not seen yet. `grpc_status` from a trailers-only head, or -1.
bool retriableResponse(const config::RetryPolicy& p, int status, int grpc_status);
// Methods a repeat cannot change the outcome of (RFC 9110 9.2.2). Others are retried only after a
// connect failure, when the request provably never left the proxy.
bool idempotentMethod(std::string_view method);
// Retries in flight on this worker's cluster, if one more starts, stay within the budget.
bool retryBudgetAllows(const config::RetryBudget& b, uint32_t active_requests,
                       uint32_t active_retries);
// Full-jitter exponential back-off before retry number `retry` (1-based): uniform in
// [0, min(max_interval, base_interval * 2^(retry-1))], drawn from `random`.
std::chrono::milliseconds retryBackOff(const config::RetryPolicy& p, uint32_t retry,
                                       uint64_t random);

}  // namespace sidetrace::proxy
