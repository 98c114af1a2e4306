#include "tracing/tracez.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <unordered_set>

#include "tracing/otlp_encode.h"
#include "tracing/utf8.h"

namespace sidetrace::tracing {

namespace {

// JSON strings for /tracez also go into its HTML page: <, > and & escaped too.
void appendJson(std::string& out, std::string_view s) {
  appendJsonString(out, s, /*html_safe=*/true);
}

void appendNumber(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  out += buf;
}

void appendKey(std::string& out, std::string_view key) {
  appendJson(out, key);
  out += ':';
}

void appendValue(std::string& out, const AttributeValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) {
    appendJson(out, *s);
  } else if (const auto* i = std::get_if<int64_t>(&v)) {
    out += std::to_string(*i);
  } else if (const auto* d = std::get_if<double>(&v)) {
    appendNumber(out, *d);
  } else {
    out += std::get<bool>(v) ? "true" : "false";
  }
}

double millis(uint64_t nanos) {
  return static_cast<double>(nanos) / 1e6;
}

uint64_t durationNanos(const SpanData& s) {
  return s.end_unix_nanos > s.start_unix_nanos ? s.end_unix_nanos - s.start_unix_nanos : 0;
}

std::string routeOf(const SpanData& s) {
  if (const auto* r = s.attribute("http.route")) {
    if (const auto* str = std::get_if<std::string>(r)) {
      return *str;
    }
  }
  return s.name;
}

// One trace as the lists show it.
struct TraceSummary {
  std::string trace_id;
  const SpanData* entry = nullptr;  // the earliest entry span (names the trace)
  uint64_t start = UINT64_MAX;
  uint64_t end = 0;
  size_t spans = 0;
  bool error = false;
  uint64_t duration() const { return end > start ? end - start : 0; }
};

struct RouteStats {
  std::vector<double> millis;
  uint64_t errors = 0;
};

// Groups spans by trace; fills per-route stats from the entry spans.
std::vector<TraceSummary> summarize(const std::vector<SpanData>& spans,
                                    std::map<std::string, RouteStats>& routes) {
  std::map<std::string, std::vector<const SpanData*>> by_trace;
  for (const auto& s : spans) {
    by_trace[s.trace_id.hex()].push_back(&s);
  }
  std::vector<TraceSummary> traces;
  traces.reserve(by_trace.size());
  for (auto& [id, members] : by_trace) {
    std::unordered_set<std::string> held;
    for (const SpanData* s : members) {
      held.insert(s->span_id.hex());
    }
    TraceSummary t;
    t.trace_id = id;
    t.spans = members.size();
    for (const SpanData* s : members) {
      t.start = std::min(t.start, s->start_unix_nanos);
      t.end = std::max(t.end, s->end_unix_nanos);
      t.error = t.error || s->status == StatusCode::Error;
      const bool entry = s->kind == SpanKind::Server || !s->parent_span_id.valid() ||
                         held.count(s->parent_span_id.hex()) == 0;
      if (!entry) {
        continue;
      }
      RouteStats& r = routes[routeOf(*s)];
      r.millis.push_back(millis(durationNanos(*s)));
      r.errors += s->status == StatusCode::Error ? 1 : 0;
      if (t.entry == nullptr || s->start_unix_nanos < t.entry->start_unix_nanos) {
        t.entry = s;
      }
    }
    if (t.entry == nullptr) {
      t.entry = members.front();  // a cycle of parents: cannot happen with real ids
    }
    traces.push_back(std::move(t));
  }
  return traces;
}

void appendTraceList(std::string& out, std::vector<const TraceSummary*> list) {
  out += '[';
  for (size_t i = 0; i < list.size(); ++i) {
    const TraceSummary& t = *list[i];
    out += i == 0 ? "{" : ",{";
    appendKey(out, "trace_id");
    appendJson(out, t.trace_id);
    out += ',';
    appendKey(out, "name");
    appendJson(out, t.entry->name);
    out += ',';
    appendKey(out, "route");
    appendJson(out, routeOf(*t.entry));
    out += ',';
    appendKey(out, "start_unix_nano");
    appendJson(out, std::to_string(t.start));
    out += ',';
    appendKey(out, "duration_ms");
    appendNumber(out, millis(t.duration()));
    out += ",\"spans\":" + std::to_string(t.spans) + ",\"error\":" + (t.error ? "true" : "false");
    out += '}';
  }
  out += ']';
}

// The first n of `traces` in the order `before` gives, keeping those `keep` accepts.
template <typename Before, typename Keep>
std::vector<const TraceSummary*> pick(const std::vector<TraceSummary>& traces, size_t n,
                                      Before before, Keep keep) {
  std::vector<const TraceSummary*> out;
  for (const auto& t : traces) {
    if (keep(t)) {
      out.push_back(&t);
    }
  }
  std::sort(out.begin(), out.end(),
            [&](const TraceSummary* a, const TraceSummary* b) { return before(*a, *b); });
  if (out.size() > n) {
    out.resize(n);
  }
  return out;
}

void appendRoutes(std::string& out, std::map<std::string, RouteStats>& routes) {
  out += '[';
  bool first = true;
  for (auto& [name, r] : routes) {
    std::sort(r.millis.begin(), r.millis.end());
    out += first ? "{" : ",{";
    first = false;
    appendKey(out, "route");
    appendJson(out, name);
    out +=
        ",\"count\":" + std::to_string(r.millis.size()) + ",\"errors\":" + std::to_string(r.errors);
    for (auto [key, p] : {std::pair{",\"p50_ms\":", 50.0}, std::pair{",\"p90_ms\":", 90.0},
                          std::pair{",\"p99_ms\":", 99.0}}) {
      out += key;
      appendNumber(out, percentile(r.millis, p));
    }
    out += '}';
  }
  out += ']';
}

void appendSpan(std::string& out, const SpanData& s, uint64_t trace_start) {
  out += '{';
  appendKey(out, "span_id");
  appendJson(out, s.span_id.hex());
  out += ',';
  appendKey(out, "parent_span_id");
  appendJson(out, s.parent_span_id.valid() ? s.parent_span_id.hex() : "");
  out += ',';
  appendKey(out, "name");
  appendJson(out, s.name);
  out += ",\"kind\":\"" + std::string(spanKindName(s.kind)) + "\",\"start_unix_nano\":\"" +
         std::to_string(s.start_unix_nanos) + "\",\"end_unix_nano\":\"" +
         std::to_string(s.end_unix_nanos) + "\",\"start_offset_ms\":";
  appendNumber(out,
               millis(s.start_unix_nanos > trace_start ? s.start_unix_nanos - trace_start : 0));
  out += ",\"duration_ms\":";
  appendNumber(out, millis(durationNanos(s)));
  out += ",\"status\":\"" + std::string(statusCodeName(s.status)) + "\",";
  appendKey(out, "status_message");
  appendJson(out, s.status_message);
  out += ",\"attributes\":{";
  for (size_t i = 0; i < s.attributes.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    appendKey(out, s.attributes[i].key);
    appendValue(out, s.attributes[i].value);
  }
  out += "},\"links\":[";
  for (size_t i = 0; i < s.links.size(); ++i) {
    out += i == 0 ? "{\"trace_id\":\"" : ",{\"trace_id\":\"";
    out += s.links[i].trace_id.hex() + "\",\"span_id\":\"" + s.links[i].span_id.hex() + "\"}";
  }
  out += "]}";
}

}  // namespace

std::vector<SpanData> decodeSpanRun(std::string_view run) {
  std::vector<SpanData> spans;
  if (run.empty()) {
    return spans;
  }
  const OtlpRequestEncoder encoder{Resource{}};
  std::string request;
  encoder.encode({run}, request);
  decodeOtlpRequest(request, &spans);
  return spans;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) {
    return 0;
  }
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string tracezSummaryJson(const std::vector<SpanData>& spans, const TracezMemory& memory,
                              size_t list_length) {
  std::map<std::string, RouteStats> routes;
  const std::vector<TraceSummary> traces = summarize(spans, routes);
  std::string out = "{\"max_bytes\":" + std::to_string(memory.max_bytes) +
                    ",\"bytes_held\":" + std::to_string(memory.bytes_held) +
                    ",\"bytes_used\":" + std::to_string(memory.bytes_used) +
                    ",\"spans_too_large\":" + std::to_string(memory.too_large) +
                    ",\"workers\":" + std::to_string(memory.workers) +
                    ",\"spans\":" + std::to_string(spans.size()) +
                    ",\"traces\":" + std::to_string(traces.size()) + ",\"routes\":";
  appendRoutes(out, routes);
  auto all = [](const TraceSummary&) { return true; };
  auto later = [](const TraceSummary& a, const TraceSummary& b) { return a.end > b.end; };
  out += ",\"latest\":";
  appendTraceList(out, pick(traces, list_length, later, all));
  out += ",\"slowest\":";
  appendTraceList(out, pick(
                           traces, list_length,
                           [](const TraceSummary& a, const TraceSummary& b) {
                             return a.duration() > b.duration();
                           },
                           all));
  out += ",\"failed\":";
  appendTraceList(out,
                  pick(traces, list_length, later, [](const TraceSummary& t) { return t.error; }));
  out += "}\n";
  return out;
}

std::optional<std::string> tracezTraceJson(const std::vector<SpanData>& spans, const TraceId& id) {
  std::vector<const SpanData*> members;
  uint64_t start = UINT64_MAX;
  for (const auto& s : spans) {
    if (s.trace_id == id) {
      members.push_back(&s);
      start = std::min(start, s.start_unix_nanos);
    }
  }
  if (members.empty()) {
    return std::nullopt;
  }
  std::stable_sort(members.begin(), members.end(), [](const SpanData* a, const SpanData* b) {
    return a->start_unix_nanos < b->start_unix_nanos;
  });
  std::string out = "{\"trace_id\":\"" + id.hex() + "\",\"spans\":[";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    appendSpan(out, *members[i], start);
  }
  out += "]}\n";
  return out;
}

}  // namespace sidetrace::tracing
