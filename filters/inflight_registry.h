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
//
// The `process` rule (process_rule.h) needs each hop's TCP connection: the forwarding worker
// records it in the request's HopSocket before the first byte goes out (a few relaxed stores, no
// lock); the egress side copies the entries under the lock and asks the kernel with it released.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "filters/socket_owners.h"
#include "tracing/trace_context.h"

namespace sidetrace::filters {

// Which rule decided an outbound call's parent (span attribute sidetrace.parent.source and
// sidetrace_egress_parent_total{source}); first that decides wins, in this order.
enum class ParentSource : uint8_t {
  Header,          // the outbound request carried a valid context: kept (the app propagates)
  RequestId,       // it carried the x-request-id of exactly one inbound request in flight
  Process,         // the app's process behind the call is working on exactly one of them
  SingleInflight,  // exactly one inbound request was in flight
  None,            // none of the above: a new trace, linked to the candidates
};
inline constexpr size_t kParentSources = 5;
const char* parentSourceName(ParentSource s);

// At most this many candidate inbound spans are linked from an outbound span that got no parent.
inline constexpr size_t kMaxParentLinks = 8;

struct ParentInference {
  ParentSource source = ParentSource::None;
  tracing::SpanContext parent;                              // valid unless source is None
  std::array<tracing::SpanContext, kMaxParentLinks> links;  // source None: the candidates
  size_t link_count = 0;
};

// An inbound request's TCP connection to the app. Written by the worker forwarding the request,
// read by any worker (a seqlock of atomics: a read that overlaps a write sees it as unknown).
class HopSocket {
 public:
  enum class State : uint8_t {
    Unsent,  // no byte of the request has gone out yet: the app cannot be working on it
    Known,   // the connection is `app` (plain HTTP/1)
    Opaque,  // sent on a connection the rule cannot judge (HTTP/2, TLS): it may be the cause
  };
  struct View {
    State state = State::Unsent;
    TcpEndpoints app;  // the app's end: src = the app's address, dst = the proxy's
    // Bytes the proxy had read on the connection before this request: more received since
    // means the app has begun to answer.
    uint64_t bytes_before = 0;
  };
  HopSocket() = default;
  // A copy starts Unsent: the registry points at the original, and a copied Stream (tests) is a
  // new request.
  HopSocket(const HopSocket&) {}
  HopSocket& operator=(const HopSocket&) {
    clear();
    return *this;
  }
  // Before the request's first byte is written.
  void setKnown(const TcpEndpoints& app, uint64_t bytes_before);
  void setOpaque();
  void clear();
  View load() const;

 private:
  void publish(uint64_t meta);
  std::atomic<uint64_t> meta_{0};  // state | v6 << 8 | sport << 16 | dport << 32 | version << 48
  std::array<std::atomic<uint64_t>, 4> addr_{};  // src, dst
  std::atomic<uint64_t> bytes_{0};
  uint16_t version_ = 0;  // writer only
};

// One in-flight entry as the process rule sees it (copied out under the registry lock).
struct InflightHop {
  tracing::SpanContext hop;
  HopSocket::View socket;
};

// What the process rule made of one in-flight request.
enum class HopVerdict : uint8_t {
  NotCause,      // not read, already answered, or gone: the app is not working on it
  Candidate,     // read, unanswered, held by the calling process
  OtherProcess,  // held by another process
  Unknown,       // cannot tell (opaque hop, owner not visible): the rule cannot decide
};

// The kernel side of the process rule (process_rule.h); an interface so that the registry's
// decision can be tested without sockets.
class ProcessProbe {
 public:
  enum class Outcome { Ran, OverBudget, Unavailable, Skipped };
  virtual ~ProcessProbe() = default;
  // Judges every hop for the outbound call whose app-side socket is `outbound` (src = the app's
  // address, dst = the egress listener's). Anything but Ran: the next rule decides.
  virtual Outcome judge(const TcpEndpoints& outbound, std::span<const InflightHop> hops,
                        std::span<HopVerdict> out) = 0;
  std::vector<InflightHop> hops;  // scratch for the registry's copy (one probe per worker)
  std::vector<HopVerdict> verdicts;
};

// The process rule looks at most this many requests in flight (beyond: the next rule decides).
inline constexpr size_t kMaxProcessHops = 64;

class InflightRegistry {
 public:
  // An inbound request's hop into the app starts; `hop` is its CLIENT span's context (invalid
  // when not traced), `socket` its connection once known (may be null: never a process parent;
  // it must outlive the entry). Returns a token for remove(), never 0.
  uint64_t add(std::string_view request_id, const tracing::SpanContext& hop,
               const HopSocket* socket = nullptr);
  void remove(uint64_t token);
  // The request_id, process, single_inflight and none rules (the header rule needs no
  // registry). `request_id`: the outbound request's x-request-id, if any. `probe` and
  // `outbound`: the process rule (off when null).
  ParentInference infer(std::optional<std::string_view> request_id, ProcessProbe* probe = nullptr,
                        const TcpEndpoints* outbound = nullptr) const;
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
  // Why the process rule could not run (sidetrace_egress_process_skipped_total{reason}).
  uint64_t processOverBudget() const { return over_budget_.load(std::memory_order_relaxed); }
  uint64_t processUnavailable() const { return unavailable_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    uint64_t token = 0;
    std::string request_id;
    tracing::SpanContext hop;
    const HopSocket* socket = nullptr;
  };
  // The process rule and what follows it, on the copy in probe.hops.
  ParentInference inferByProcess(ProcessProbe& probe, const TcpEndpoints& outbound) const;

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
  mutable std::atomic<uint64_t> over_budget_{0};
  mutable std::atomic<uint64_t> unavailable_{0};
};

}  // namespace sidetrace::filters
