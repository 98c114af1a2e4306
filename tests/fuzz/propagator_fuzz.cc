// Trace context propagators (tracing/propagator.h) over the proxy's own carrier
// (filters::HeaderMap): W3C traceparent/tracestate, baggage, B3 single and multi. Input: header
// lines "name: value" as a client would send them (repeated names allowed).
//
// Properties: for every propagator, extract → inject → extract gives the same context (ids, flags,
// debug, tracestate), and injecting that context again writes the same headers (one canonical
// form); the tracestate and baggage sanitizers are idempotent and keep within the W3C limits;
// after CompositePropagator::sanitize a baggage header left in place is one the sanitizer keeps
// unchanged.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "filters/http_message.h"
#include "tests/fuzz/fuzz_input.h"
#include "tracing/propagator.h"

using sidetrace::filters::HeaderMap;
using sidetrace::fuzz::check;
using sidetrace::tracing::SpanContext;

namespace {

std::string describe(const SpanContext& c) {
  return c.trace_id.hex() + "-" + c.span_id.hex() + " flags=" + std::to_string(c.flags) +
         " debug=" + std::to_string(c.debug) + " remote=" + std::to_string(c.remote) +
         " tracestate=" + c.tracestate;
}

std::string describe(const HeaderMap& h) {
  std::string s;
  for (const auto& f : h) {
    s += f.name + ": " + f.value + "\n";
  }
  return s;
}

template <class P>
void roundTrip(const char* name, const P& p, const HeaderMap& incoming) {
  auto first = p.extract(incoming);
  if (!first) {
    return;
  }
  check(first->valid(), "extract returned an invalid context", describe(*first));
  HeaderMap out;
  p.inject(*first, out);
  auto second = p.extract(out);
  check(second.has_value(), "an injected context does not extract", describe(*first),
        describe(out));
  if (describe(*first) != describe(*second)) {
    std::fprintf(stderr, "propagator: %s\n", name);
    sidetrace::fuzz::violated("extract -> inject -> extract changed the context", describe(*first),
                              describe(*second));
  }
  HeaderMap again;
  p.inject(*second, again);
  check(describe(out) == describe(again), "the same context injects differently", describe(out),
        describe(again));
}

void checkTracestate(std::string_view value) {
  auto s = sidetrace::tracing::sanitizeTracestate(value);
  if (!s) {
    return;
  }
  check(s->size() <= 512, "tracestate over 512 characters kept", *s);
  check(std::count(s->begin(), s->end(), ',') < 32, "tracestate over 32 members kept", *s);
  auto again = sidetrace::tracing::sanitizeTracestate(*s);
  check(again && *again == *s, "sanitized tracestate is not stable", *s, again.value_or("(drop)"));
}

void checkBaggage(std::string_view value) {
  auto s = sidetrace::tracing::sanitizeBaggage(value);
  if (!s) {
    return;
  }
  check(s->size() <= 8192, "baggage over 8192 bytes kept", *s);
  auto again = sidetrace::tracing::sanitizeBaggage(*s);
  check(again && *again == *s, "sanitized baggage is not stable", *s, again.value_or("(drop)"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tracecontext = sidetrace::tracing::makeTraceContextPropagator();
  static const auto b3single = sidetrace::tracing::makeB3Propagator(false);
  static const auto b3multi = sidetrace::tracing::makeB3Propagator(true);
  static const sidetrace::tracing::CompositePropagator composite(
      std::vector<std::string>{"tracecontext", "baggage", "b3multi"});

  sidetrace::fuzz::FuzzInput in(data, size);
  HeaderMap headers;
  while (!in.empty()) {
    std::string_view line = in.line();
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    headers.add(std::string(line.substr(0, colon)),
                std::string(sidetrace::filters::trimOws(line.substr(colon + 1))));
  }

  roundTrip("tracecontext", *tracecontext, headers);
  roundTrip("b3", *b3single, headers);
  roundTrip("b3multi", *b3multi, headers);
  roundTrip("tracecontext,baggage,b3multi", composite, headers);

  for (const auto& h : headers) {
    if (sidetrace::filters::iequals(h.name, "tracestate")) {
      checkTracestate(h.value);
    } else if (sidetrace::filters::iequals(h.name, "baggage")) {
      checkBaggage(h.value);
    } else if (sidetrace::filters::iequals(h.name, "traceparent")) {
      if (auto ctx = sidetrace::tracing::parseTraceparent(h.value)) {
        const std::string text = sidetrace::tracing::formatTraceparent(*ctx);
        auto back = sidetrace::tracing::parseTraceparent(text);
        check(back && describe(*back) == describe(*ctx), "traceparent does not round-trip", text);
      }
    } else if (sidetrace::filters::iequals(h.name, "b3")) {
      if (auto ctx = sidetrace::tracing::parseB3Single(h.value)) {
        check(ctx->valid(), "parseB3Single returned an invalid context", h.value);
      }
    }
  }

  HeaderMap sanitized = headers;
  composite.sanitize(sanitized);
  std::string scratch;
  if (auto v = sanitized.getList("baggage", scratch)) {
    const std::string value(*v);
    auto s = sidetrace::tracing::sanitizeBaggage(value);
    check(s.has_value(), "a baggage header kept by sanitize is not valid", value);
  }
  return 0;
}
