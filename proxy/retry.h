#pragma once
// Retry decisions for one request (config::RetryPolicy, config::RetryBudget), kept apart from the
// exchange loops so they can be read and tested on their own. Envoy's semantics: "5xx" covers
// every upstream failure the proxy would answer with 5xx (connect failure, reset, per-try timeout,
// bad response) and 5xx responses; "gateway-error" the same, but only 502/503/504 responses; the
// route's total timeout is never retried.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

#include <optional>
#include "config/config.h"

#include "filters/stream.h"
#include "proxy/stats.h"
#include "upstream/connection_pool.h"

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
// How one finished attempt counts, in both exchange loops alike: whether it tells outlier
// detection anything about its endpoint, and whether another attempt may serve the client. Only
// what the endpoint did counts: not a client that reset or broke its request (a client must not
// be able to eject endpoints, and a retry after it left serves nobody), not a circuit-breaker
// refusal, not the route's own deadline (a per-try timeout is the endpoint's).
struct AttemptEnd {
  filters::UpstreamResult::Error error = filters::UpstreamResult::Error::None;  // None: a head
  int status = 0;                // the response head's status, when one arrived
  bool per_try_timeout = false;  // the per-try deadline (or the connect timeout) ended it
  bool route_timeout = false;    // the route's deadline has passed (no time for another)
  bool client_gone = false;      // the client reset, left, or sent a malformed body
  bool connect_refused = false;  // a connect failure that was not a timeout or TLS handshake
};
struct AttemptVerdict {
  bool report = false;     // tell outlier detection about the endpoint ...
  bool failed = false;     // ... that it failed (5xx, connect failure, reset, per-try timeout)
  bool may_retry = false;  // the retry policy may still try another attempt
};
AttemptVerdict judgeAttempt(const AttemptEnd& a);

// Requests in flight to one cluster on one worker, and how many of them are retrying: the retry
// budget's inputs. Worker thread only.
struct ClusterLoad {
  uint32_t active = 0;
  uint32_t retrying = 0;
};

// One request's retries against its cluster, for both exchange loops: it counts the request as
// active while it lives, and admits each retry through the policy's limit, the retry budget, the
// cluster's max_retries breaker and the time left, counting why when it says no.
class RetryAttempts {
 public:
  RetryAttempts(ClusterLoad& load, const upstream::ResolvedCluster& cluster, WorkerStats& stats,
                size_t cluster_slot);
  ~RetryAttempts();
  RetryAttempts(const RetryAttempts&) = delete;
  RetryAttempts& operator=(const RetryAttempts&) = delete;

  uint32_t count() const { return retries_; }  // retries made so far
  // After a retriable failure: the back-off before the next attempt, or nullopt when there is
  // to be none (retries used up, budget or breaker full, or no time left before `deadline`).
  // `free`: the failure was a refused connect and an endpoint is left that this request has not
  // tried (retryIsFree): that retry goes at once, and the retry budget neither refuses it nor
  // counts it — the refused attempt put no load on any endpoint, so retrying adds none, and a
  // budget that refused it would fail requests the other endpoints could serve. num_retries and
  // the max_retries breaker (an operator's explicit limit) still apply.
  std::optional<std::chrono::milliseconds> admit(const config::RetryPolicy& p, uint64_t random,
                                                 std::chrono::steady_clock::time_point deadline,
                                                 bool free = false);
  // The admitted retry starts now (`free` as admitted).
  void begin(bool free = false);
  // The request is over; after retries, counts whether it finally succeeded.
  void finish(bool failed);

 private:
  ClusterLoad& load_;
  const upstream::ResolvedCluster& cluster_;
  WorkerStats& stats_;
  size_t slot_;
  upstream::BreakerSlot breaker_;  // one of max_retries, from the first retry to the end
  uint32_t retries_ = 0;
  bool counted_ = false;  // in load_.retrying (from its first retry that was not free)
};

// The endpoints one request has tried (at most 1 + 10 retries).
struct TriedEndpoints {
  std::array<const upstream::Endpoint*, 11> list{};
  size_t size = 0;
  bool contains(const upstream::Endpoint* ep) const {
    return std::find(list.begin(), list.begin() + size, ep) != list.begin() + size;
  }
  void add(const upstream::Endpoint* ep) {
    if (size < list.size()) {
      list[size++] = ep;
    }
  }
};
// The endpoint for the next attempt: the balancer's pick, picked again (at most once per endpoint
// of the cluster) while it is one this request already tried — Envoy's previous_hosts predicate,
// so a retry does not land on the endpoint that just failed while others are there.
const upstream::Endpoint& pickForAttempt(upstream::ConnectionPool& pool, TriedEndpoints& tried);
// The attempt's connect was refused and the cluster has an endpoint this request has not tried:
// its retry costs no endpoint anything (RetryAttempts::admit's `free`).
bool retryIsFree(const AttemptEnd& a, const upstream::ConnectionPool& pool,
                 const TriedEndpoints& tried);

// Full-jitter exponential back-off before retry number `retry` (1-based): uniform in
// [0, min(max_interval, base_interval * 2^(retry-1))], drawn from `random`.
std::chrono::milliseconds retryBackOff(const config::RetryPolicy& p, uint32_t retry,
                                       uint64_t random);

}  // namespace sidetrace::proxy
