#pragma once
// The inbound requests this sidecar has handed to the app and not yet seen answered, across every
// worker, so that the egress side can tell which of them an outbound call of the app belongs to.
//
// Why one locked table for the process rather than per-worker state: an inbound request arrives
// on one worker and the app's outbound call on any other, and "exactly one request in flight"
// is a question about all of them. The table is small (the app's concurrency), the lock is held
// for a few stores, and only processes with an egress listener register anything: without one,
// ingress never touches it.
//
// The contract with the tracing filter: add() when the CLIENT span of an inbound request starts
// (the hop into the app, which becomes the parent), remove() when that attempt ended. Requests
// that are not traced register too, with an invalid context: an outbound call may belong to them,
// and counting them is what keeps single_inflight from picking a wrong parent.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tracing/trace_context.h"

namespace sidetrace::filters {

// Which rule decided an outbound call's parent (span attribute sidetrace.parent.source and
// sidetrace_egress_parent_total{source}); first that decides wins, in this order.
enum class ParentSource : uint8_t {
  Header,          // the outbound request carried a valid context: kept (the app propagates)
  RequestId,       // it carried the x-request-id of exactly one inbound request in flight
  SingleInflight,  // exactly one inbound request was in flight
  None,            // none of the above: a new trace, linked to the candidates
};
inline constexpr size_t kParentSources = 4;
const char* parentSourceName(ParentSource s);

// At most this many candidate inbound spans are linked from an outbound span that got no parent.
inline constexpr size_t kMaxParentLinks = 8;

struct ParentInference {
  ParentSource source = ParentSource::None;
  tracing::SpanContext parent;                              // valid unless source is None
  std::array<tracing::SpanContext, kMaxParentLinks> links;  // source None: the candidates
  size_t link_count = 0;
};

class InflightRegistry {
 public:
  // An inbound request's hop into the app starts; `hop` is its CLIENT span's context (invalid
  // when not traced). Returns a token for remove(), never 0.
  uint64_t add(std::string_view request_id, const tracing::SpanContext& hop);
  void remove(uint64_t token);
  // The request_id, single_inflight and none rules (the header rule needs no registry).
  // `request_id`: the outbound request's x-request-id, if any.
  ParentInference infer(std::optional<std::string_view> request_id) const;
  size_t size() const;

  // Egress counters, read by /metrics (one relaxed add per outbound request).
  void countParent(ParentSource s) {
    parents_[static_cast<size_t>(s)].fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t parents(ParentSource s) const {
    return parents_[static_cast<size_t>(s)].load(std::memory_order_relaxed);
  }
  void countDenied() { denied_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t denied() const { return denied_.load(std::memory_order_relaxed); }
  // CONNECT tunnels: opened() once the destination answered the connect, closed() when the
  // tunnel ended (sidetrace_egress_tunnels_total, sidetrace_egress_tunnels_active).
  void tunnelOpened() {
    tunnels_total_.fetch_add(1, std::memory_order_relaxed);
    tunnels_active_.fetch_add(1, std::memory_order_relaxed);
  }
  void tunnelClosed() { tunnels_active_.fetch_sub(1, std::memory_order_relaxed); }
  uint64_t tunnelsTotal() const { return tunnels_total_.load(std::memory_order_relaxed); }
  int64_t tunnelsActive() const { return tunnels_active_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    uint64_t token = 0;
    std::string request_id;
    tracing::SpanContext hop;
  };
  mutable std::mutex mu_;
  // Entries [0, size_) are live; the rest is spare storage whose strings keep their capacity,
  // so a warm table registers a request without allocating.
  std::vector<Entry> entries_;
  size_t size_ = 0;
  uint64_t next_token_ = 1;
  std::array<std::atomic<uint64_t>, kParentSources> parents_{};
  std::atomic<uint64_t> denied_{0};
  std::atomic<uint64_t> tunnels_total_{0};
  std::atomic<int64_t> tunnels_active_{0};
};

}  // namespace sidetrace::filters
