#pragma once
// The tiny tracing API the filters use (Envoy trace_driver.h habit): start a span, set attributes
// and status, inject its context, end it. One Tracer per worker thread; spans are owned by the
// stream that started them. A non-recording span (unsampled) still has ids so context propagates
// with flags 00, but costs no attribute work and exports nothing.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tracing/batch_processor.h"
#include "tracing/propagator.h"
#include "tracing/sampler.h"
#include "tracing/span_data.h"
#include "tracing/trace_context.h"

namespace sidetrace::tracing {

using Clock = std::function<uint64_t()>;  // unix nanoseconds
uint64_t systemClockNanos();

class Tracer;

class Span {
 public:
  Span() = default;  // an empty span: not recording, invalid context
  // Moving transfers the open span; assigning over an open span ends it first (never loses it).
  Span(Span&& other) noexcept;
  Span& operator=(Span&& other) noexcept;

  bool recording() const { return data_ != nullptr; }
  const SpanContext& context() const { return context_; }
  void setName(std::string name);
  void setAttribute(std::string_view key, AttributeValue value);
  void setStatus(StatusCode code, std::string message = {});
  // Ends the span and hands its data to the worker's buffer. Further calls are no-ops.
  void end();
  ~Span();  // ends the span if still open

 private:
  friend class Tracer;
  SpanContext context_;
  std::unique_ptr<SpanData> data_;
  Tracer* tracer_ = nullptr;
};

class Tracer {
 public:
  Tracer(std::shared_ptr<const Sampler> sampler, WorkerSpanBuffer* buffer,
         Clock clock = systemClockNanos, std::optional<uint64_t> seed = std::nullopt);

  // A SERVER span: samples with the sampler; parent is the extracted remote context or nullptr
  // (then a new trace id is made).
  Span startServerSpan(std::string name, const SpanContext* remote_parent);
  // A child span (e.g. CLIENT) of a local parent; inherits its sampling decision.
  Span startChildSpan(std::string name, SpanKind kind, const Span& parent);

  uint64_t now() const { return clock_(); }

 private:
  friend class Span;
  void finish(SpanData&& data);

  std::shared_ptr<const Sampler> sampler_;
  WorkerSpanBuffer* buffer_;
  Clock clock_;
  IdGenerator ids_;
};

// Builds the resource from config: service.name, host.name, telemetry.sdk.{name,language,version},
// then config resource attributes (which include OTEL_RESOURCE_ATTRIBUTES, applied by config/).
Resource makeResource(const config::TracingConfig& cfg);

}  // namespace sidetrace::tracing
