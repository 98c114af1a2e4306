#pragma once
// Tracing: extract the caller's context, apply ignore rules, sample, run the SERVER span; one
// CLIENT span per upstream attempt with its context injected upstream. Attributes are written when
// the span ends (nothing is computed for unsampled spans). Never fails a request: a malformed
// context starts a new trace.

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "filters/filter.h"
#include "filters/process_rule.h"
#include "tracing/propagator.h"
#include "tracing/tracer.h"

namespace sidetrace::filters {

// With an egress listener configured (`registry` set), the filter also keeps the in-flight
// registry: an ingress request is in it from its CLIENT span's start to that attempt's end. On
// the egress listener there is no SERVER span: each attempt's CLIENT span gets the parent the
// registry infers (inflight_registry.h), recorded as sidetrace.parent.source.
class TracingFilter : public Filter {
 public:
  // `process_rule`: judge egress parents by the app's sockets too (egress.process).
  TracingFilter(const config::TracingConfig& cfg, tracing::Tracer& tracer,
                InflightRegistry* registry = nullptr, bool process_rule = false);

  FilterStatus onRequest(Stream& s) override;
  void onUpstreamRequest(Stream& s, RequestHead& upstream_request) override;
  void onUpstreamResult(Stream& s) override;
  void onComplete(Stream& s) override;

 private:
  void inferEgressParent(Stream& s);
  void leaveRegistry(Stream& s);

  const config::TracingConfig& cfg_;
  tracing::Tracer& tracer_;
  InflightRegistry* registry_;
  std::unique_ptr<ProcessRule> process_;  // egress.process (this worker's sockets and caches)
  tracing::CompositePropagator propagator_;
  std::string scratch_;  // span names and url.full are built here (one worker: no sharing)
};

// Shared helpers (exposed for tests).
// True when a tracing.ignore rule matches: the request is proxied untraced, its context passed on.
bool ignoreMatches(const std::vector<config::IgnoreRule>& rules, const RequestHead& req);
bool globMatch(std::string_view pattern, std::string_view text);  // '*' matches any run
std::string redactQuery(std::string_view query);  // "a=1&b&&c=" → "a=REDACTED&REDACTED&&c=REDACTED"
// A URL (e.g. a Referer) with its query redacted as above; without '?' it is returned as is.
std::string redactUrlQuery(std::string_view url);
// The methods the HTTP semantic conventions name (RFC 9110's and PATCH); any other is "_OTHER".
bool knownHttpMethod(std::string_view method);

}  // namespace sidetrace::filters
