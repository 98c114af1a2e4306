#include "proxy/retry.h"

#include <algorithm>

#include "filters/grpc.h"

namespace sidetrace::proxy {

using Error = filters::UpstreamResult::Error;
using P = config::RetryPolicy;

bool retriableFailure(const P& p, Error e, bool per_try_timeout) {
  const bool any5xx = (p.retry_on & (P::k5xx | P::kGatewayError)) != 0;
  switch (e) {
    case Error::None:
      return false;
    case Error::ConnectFailure:
    case Error::ConnectTimeout:  // a connect failure that took connect_timeout (as Envoy's)
      return any5xx || (p.retry_on & P::kConnectFailure) != 0;
    case Error::Reset:
      return any5xx || (p.retry_on & P::kReset) != 0;
    case Error::Timeout:
      return per_try_timeout && (any5xx || (p.retry_on & P::kReset) != 0);
    case Error::ProtocolError:
      return any5xx;
    case Error::Overflow:
      return false;  // the breakers say the cluster has enough in flight already
    case Error::Unresolved:
      return false;  // egress only, which has no retry policy
  }
  return false;
}

AttemptVerdict judgeAttempt(const AttemptEnd& a) {
  if (a.client_gone || a.error == Error::Overflow) {
    return {};
  }
  if (a.route_timeout && !a.per_try_timeout) {
    return {};  // the route's own deadline ended it: not the endpoint's doing, and no time left
  }
  return {true, a.error != Error::None || a.status >= 500, !a.route_timeout};
}

bool retriableResponse(const P& p, int status, int grpc_status) {
  if ((p.retry_on & P::k5xx) != 0 && status >= 500 && status <= 599) {
    return true;
  }
  if ((p.retry_on & P::kGatewayError) != 0 && (status == 502 || status == 503 || status == 504)) {
    return true;
  }
  if ((p.retry_on & P::kRetriableStatusCodes) != 0 &&
      std::find(p.retriable_status_codes.begin(), p.retriable_status_codes.end(), status) !=
          p.retriable_status_codes.end()) {
    return true;
  }
  switch (grpc_status) {
    case filters::kGrpcCancelled:
      return (p.retry_on & P::kGrpcCancelled) != 0;
    case filters::kGrpcDeadlineExceeded:
      return (p.retry_on & P::kGrpcDeadlineExceeded) != 0;
    case 8:  // RESOURCE_EXHAUSTED
      return (p.retry_on & P::kGrpcResourceExhausted) != 0;
    case filters::kGrpcUnavailable:
      return (p.retry_on & P::kGrpcUnavailable) != 0;
    default:
      return false;
  }
}

const upstream::Endpoint& pickForAttempt(upstream::ConnectionPool& pool, TriedEndpoints& tried) {
  const upstream::Endpoint* ep = &pool.pick();
  for (size_t i = 1; tried.contains(ep) && i < pool.endpointCount(); ++i) {
    ep = &pool.pick();
  }
  tried.add(ep);
  pool.countPick(*ep);
  return *ep;
}

bool retryIsFree(const AttemptEnd& a, const upstream::ConnectionPool& pool,
                 const TriedEndpoints& tried) {
  // `tried` may hold an endpoint twice (when all were tried): fewer entries than endpoints means
  // at least one is untried.
  return a.error == Error::ConnectFailure && a.connect_refused && tried.size < pool.endpointCount();
}

bool idempotentMethod(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

bool retryBudgetAllows(const config::RetryBudget& b, uint32_t active_requests,
                       uint32_t active_retries) {
  const uint64_t share = uint64_t{active_requests} * b.budget_percent / 100;
  const uint64_t limit = std::max<uint64_t>(share, b.min_retry_concurrency);
  return active_retries < limit;
}

std::chrono::milliseconds retryBackOff(const P& p, uint32_t retry, uint64_t random) {
  const uint64_t base = static_cast<uint64_t>(p.base_interval.count());
  const uint64_t cap = static_cast<uint64_t>(p.max_interval.count());
  const uint32_t shift = std::min<uint32_t>(retry > 0 ? retry - 1 : 0, 20);
  const uint64_t ceiling = std::min(cap, base << shift);
  return std::chrono::milliseconds(ceiling == 0 ? 0 : random % (ceiling + 1));
}

RetryAttempts::RetryAttempts(ClusterLoad& load, const upstream::ResolvedCluster& cluster,
                             WorkerStats& stats, size_t cluster_slot)
    : load_(load), cluster_(cluster), stats_(stats), slot_(cluster_slot) {
  ++load_.active;
}

RetryAttempts::~RetryAttempts() {
  --load_.active;
  if (counted_) {
    --load_.retrying;
  }
}

std::optional<std::chrono::milliseconds> RetryAttempts::admit(
    const config::RetryPolicy& p, uint64_t random, std::chrono::steady_clock::time_point deadline,
    bool free) {
  if (retries_ >= p.num_retries) {
    return std::nullopt;
  }
  const uint32_t others_retrying = load_.retrying - (counted_ ? 1 : 0);
  if (!free && !retryBudgetAllows(cluster_.cfg->retry_budget, load_.active, others_retrying)) {
    stats_.countRetry(slot_, WorkerStats::kRetryOverflow);
    return std::nullopt;
  }
  if (!breaker_) {
    breaker_ = upstream::CircuitBreakers::take(cluster_.breakers->retries);
    if (!breaker_) {
      stats_.countTrip(slot_, WorkerStats::kBreakerRetries);
      stats_.countRetry(slot_, WorkerStats::kRetryOverflow);
      return std::nullopt;
    }
  }
  const auto wait = free ? std::chrono::milliseconds(0) : retryBackOff(p, retries_ + 1, random);
  if (std::chrono::steady_clock::now() + wait >= deadline) {
    return std::nullopt;  // no time left for another attempt
  }
  return wait;
}

void RetryAttempts::begin(bool free) {
  ++retries_;
  if (!free && !counted_) {
    counted_ = true;
    ++load_.retrying;
  }
  stats_.countRetry(slot_, WorkerStats::kRetryAttempted);
}

void RetryAttempts::finish(bool failed) {
  if (retries_ > 0) {
    stats_.countRetry(slot_, failed ? WorkerStats::kRetryExhausted : WorkerStats::kRetrySucceeded);
  }
}

}  // namespace sidetrace::proxy
