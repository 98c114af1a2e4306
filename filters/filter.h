#pragma once
// The filter contract (Envoy's http/filter.h, trimmed to what a tracing proxy needs). Filters are
// per-worker objects without per-request state (that lives in Stream), called on the worker thread:
//   onRequest          once per request, after the request head is parsed, in chain order; a filter
//                      that sets stream.local_reply and returns StopIteration ends the chain, and
//                      the proxy answers with that reply (later filters' onRequest are not called).
//   onRouted           once per request, right after the onRequest calls, for each filter whose
//                      onRequest ran (in chain order): the route is decided by then (stream.route,
//                      or a local reply is pending). What depends on the route starts here.
//   onUpstreamRequest  once per upstream attempt, with the head about to be sent (mutable).
//   onUpstreamResult   once per upstream attempt, when it ended: response fully received, or failed
//                      (stream.upstream says how).
//   onResponse         once, with the response head about to be sent downstream (mutable), in
//                      reverse chain order; also for local replies.
//   onComplete         once per request when the exchange is over (success or not), reverse order.
// Bodies stream past the filters: none of ours needs them, and skipping them keeps the hot loop
// free of virtual calls per chunk.

#include <memory>
#include <vector>

#include "filters/stream.h"

namespace sidetrace::filters {

enum class FilterStatus { Continue, StopIteration };

class Filter {
 public:
  virtual ~Filter() = default;
  virtual FilterStatus onRequest(Stream&) { return FilterStatus::Continue; }
  virtual void onRouted(Stream&) {}
  virtual void onUpstreamRequest(Stream&, RequestHead& /*upstream_request*/) {}
  virtual void onUpstreamResult(Stream&) {}
  virtual void onResponse(Stream&, ResponseHead&) {}
  virtual void onComplete(Stream&) {}
};

class FilterChain {
 public:
  void add(std::unique_ptr<Filter> f) { filters_.push_back(std::move(f)); }
  // Runs onRequest in order, then onRouted on the filters whose onRequest ran; returns
  // StopIteration when a filter produced a local reply.
  FilterStatus onRequest(Stream& s);
  void onUpstreamRequest(Stream& s, RequestHead& upstream_request);
  void onUpstreamResult(Stream& s);
  void onResponse(Stream& s, ResponseHead& head);
  void onComplete(Stream& s);

 private:
  std::vector<std::unique_ptr<Filter>> filters_;
};

}  // namespace sidetrace::filters
