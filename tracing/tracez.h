#pragma once
// What the admin /tracez view shows, computed on the admin thread from the spans the workers
// kept (recent_spans.h): spans grouped by trace id (the SERVER span, the CLIENT span of each
// attempt and egress CLIENT spans of one trace together), per-route counts, errors and latency
// percentiles, the latest, slowest and failed traces, and one trace's spans in full. JSON only;
// the HTML page (proxy/tracez_page.h) renders this JSON in the browser.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tracing/span_data.h"

namespace sidetrace::tracing {

// Decodes a run of ScopeSpans.spans elements (what RecentSpans::copyTo writes); empty when the
// bytes do not decode.
std::vector<SpanData> decodeSpanRun(std::string_view run);

// The memory of the view, reported alongside the spans.
struct TracezMemory {
  size_t max_bytes = 0;    // admin.tracez.max_bytes
  size_t bytes_held = 0;   // allocated by every worker's store (never above max_bytes)
  size_t bytes_used = 0;   // of which holding spans
  uint64_t too_large = 0;  // spans not kept: larger than a worker's half of the bound
  size_t workers = 0;
};

// {"max_bytes", "bytes_held", "bytes_used", "spans_too_large", "workers", "spans", "traces",
//  "routes": [{"route", "count", "errors", "p50_ms", "p90_ms", "p99_ms"}],
//  "latest"|"slowest"|"failed": [{"trace_id", "name", "route", "start_unix_nano", "duration_ms",
//                                 "spans", "error"}]}
// A request is an entry span: a SERVER span, or a span whose parent is not held (an egress
// CLIENT span whose inbound request came from elsewhere). Its route: http.route, else its name.
std::string tracezSummaryJson(const std::vector<SpanData>& spans, const TracezMemory& memory,
                              size_t list_length = 20);

// {"trace_id", "spans": [{"span_id", "parent_span_id", "name", "kind", "start_unix_nano",
//  "end_unix_nano", "start_offset_ms", "duration_ms", "status", "status_message",
//  "attributes": {...}, "links": [{"trace_id", "span_id"}]}]}, spans by start time; nullopt when
// no span of the trace is held.
std::optional<std::string> tracezTraceJson(const std::vector<SpanData>& spans, const TraceId& id);

// Nearest-rank percentile (p in (0, 100]) of sorted values; 0 when empty.
double percentile(const std::vector<double>& sorted, double p);

}  // namespace sidetrace::tracing
