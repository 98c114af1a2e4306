#pragma once
// Context propagators (OpenTelemetry TextMapPropagator, trimmed). They read and write headers
// through a small carrier interface so tracing/ never depends on the proxy's header type.
// Header names given to the carrier are lower-case.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tracing/trace_context.h"

namespace sidetrace::tracing {

class HeaderCarrier {
 public:
  virtual ~HeaderCarrier() = default;
  // First value of the header, or nullopt.
  virtual std::optional<std::string_view> get(std::string_view name) const = 0;
  // Number of field lines with this name (a field sent in several lines arrives as several).
  virtual size_t count(std::string_view name) const = 0;
  // A list-valued header (tracestate, baggage) as RFC 9110 §5.3 combines it: every line's value
  // in order, joined by ",". With one line, that value itself; `scratch` holds the joined text
  // otherwise (so the common case copies nothing). nullopt when absent.
  virtual std::optional<std::string_view> getList(std::string_view name,
                                                  std::string& scratch) const = 0;
  // Replace every value of the header with this one.
  virtual void set(std::string_view name, std::string_view value) = 0;
  virtual void remove(std::string_view name) = 0;
};

class Propagator {
 public:
  virtual ~Propagator() = default;
  // Returns a valid remote context, or nothing (absent or malformed: never an error).
  virtual std::optional<SpanContext> extract(const HeaderCarrier& carrier) const = 0;
  // Writes ctx in this propagator's format (ctx is valid).
  virtual void inject(const SpanContext& ctx, HeaderCarrier& carrier) const = 0;
};

// W3C traceparent/tracestate, exactly as the Trace Context spec says: version ff invalid, future
// versions parsed by their 00 prefix, all-zero ids invalid, upper-case hex invalid, a traceparent
// sent in two lines invalid; the sampled and (level 2) random flags kept; tracestate lines
// combined, kept only with a valid traceparent and only within the spec's limits (32 members,
// key/value grammar, 512 characters: see sanitizeTracestate).
std::unique_ptr<Propagator> makeTraceContextPropagator();
// B3 (extract: single header `b3` wins, else X-B3-* multi headers); inject single or multi. The
// debug flag (X-B3-Flags: 1, single "d") is kept and passed on; it implies sampled.
std::unique_ptr<Propagator> makeB3Propagator(bool inject_multi_header);
// W3C baggage: extract yields no span context; the proxy forwards a valid `baggage` header
// untouched and drops one that breaks the spec's limits (done by sanitizeBaggage).
std::optional<std::string> sanitizeBaggage(std::string_view header_value);

// The configured set (names: tracecontext, baggage, b3, b3multi, none). Extract from the first
// that yields a valid context, completed by the others that carry the same span (B3 debug, W3C
// tracestate and random flag); inject with all. Unknown names throw std::invalid_argument.
class CompositePropagator {
 public:
  explicit CompositePropagator(const std::vector<std::string>& names);
  std::optional<SpanContext> extract(const HeaderCarrier& carrier) const;
  void inject(const SpanContext& ctx, HeaderCarrier& carrier) const;
  // Apply the baggage rule when "baggage" is configured (drop an invalid baggage header).
  void sanitize(HeaderCarrier& carrier) const;

 private:
  std::vector<std::unique_ptr<Propagator>> propagators_;
  bool baggage_ = false;
};

// Parsing entry points exposed for unit tests and fuzzing.
std::optional<SpanContext> parseTraceparent(std::string_view value);
std::string formatTraceparent(const SpanContext& ctx);
inline constexpr size_t kTraceparentSize = 55;  // "00-" 32 hex "-" 16 hex "-" 2 hex
// The same into buf, without allocating; returns a view of buf.
std::string_view formatTraceparent(const SpanContext& ctx, char (&buf)[kTraceparentSize]);
// nullopt: drop it. A valid list longer than 512 characters is cut as the spec suggests: members
// over 128 characters go first (from the end), then members from the end.
std::optional<std::string> sanitizeTracestate(std::string_view value);
std::optional<SpanContext> parseB3Single(std::string_view value);

}  // namespace sidetrace::tracing
