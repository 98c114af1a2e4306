#pragma once
// The tiny tracing API the filters use (Envoy trace_driver.h habit): start a span, set attributes
// and status, inject its context, end it. One Tracer per worker thread; spans are owned by the
// stream that started them. A non-recording span (unsampled, or no exporter) still has ids so
// context propagates (flags 00 when unsampled), but costs no attribute work and exports nothing.
// A recording span writes into a pooled SpanRecord (span_data.h): no allocation once warm.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tracing/batch_processor.h"
#include "tracing/otlp_encode.h"
#include "tracing/propagator.h"
#include "tracing/sampler.h"
#include "tracing/span_data.h"
#include "tracing/trace_context.h"

namespace sidetrace::tracing {

using Clock = std::function<uint64_t()>;  // unix nanoseconds
uint64_t systemClockNanos();

class Tracer;

// Attributes encoded once for many spans: those that are the same for every request of a
// connection, an endpoint or a route (addresses, ports, route name). A span takes them with one
// copy (Span::addAttributes) instead of encoding each again (~50 instructions an attribute).
// Only ASCII strings: a string that needs repair, or a cut under the span limits, would encode
// differently under other limits; a block holding one is never used (usable() is false).
class AttributeBlock {
 public:
  AttributeBlock() = default;
  // Appends an attribute as Span::setAttribute would with no limits. Out of line: a block is
  // built once for many spans (and, inlined with a known alternative, GCC 12 at -O1 under the
  // sanitizers warns that the variant's other member may be used uninitialized).
  void setAttribute(std::string_view key, const AttributeValueView& value);
  void clear() {
    bytes_.clear();
    bytes_.reserve(kInitialBytes);  // once: a block is held per cache slot, most never used
    count_ = 0;
    longest_text_ = 0;
    usable_ = true;
  }
  bool usable() const { return usable_; }
  uint32_t count() const { return count_; }
  size_t longestText() const { return longest_text_; }  // bytes of its longest string value
  std::string_view bytes() const { return bytes_.view(); }

 private:
  static constexpr size_t kInitialBytes = 192;  // a connection's or endpoint's few attributes
  WireBuffer bytes_;
  uint32_t count_ = 0;
  size_t longest_text_ = 0;
  bool usable_ = true;
};

class Span {
 public:
  Span() = default;  // an empty span: not recording, invalid context
  // Moving transfers the open span; assigning over an open span ends it first (never loses it).
  // Inline: a stream assigns two spans per request, and a moved-from one needs no end().
  Span(Span&& other) noexcept
      : context_(std::move(other.context_)),
        record_(std::move(other.record_)),
        tracer_(std::exchange(other.tracer_, nullptr)) {}
  Span& operator=(Span&& other) noexcept {
    if (this != &other) {
      if (tracer_ != nullptr || record_ != nullptr) {
        end();
      }
      context_ = std::move(other.context_);
      record_ = std::move(other.record_);
      tracer_ = std::exchange(other.tracer_, nullptr);
    }
    return *this;
  }

  bool recording() const { return record_ != nullptr; }
  const SpanContext& context() const { return context_; }
  void setName(std::string_view name);
  // Appends an attribute, encoded at once. Set each key at most once per span: OTLP wants unique
  // keys, and checking on every call would cost more than the attribute itself (the tracing
  // filter sets each key once; its tests check that exported spans have no duplicate keys).
  // The tracer's span limits apply: a long string is cut, an attribute past the count is dropped
  // and counted in dropped_attributes_count.
  void setAttribute(std::string_view key, const AttributeValueView& value);
  // A string-array attribute (OTLP ArrayValue of strings), e.g. every value of a repeated header.
  // The same limits apply: each string is cut at attribute_value_length, the array counts once.
  void setStringArrayAttribute(std::string_view key, const std::string_view* values, size_t count);
  // The block's attributes, exactly as setAttribute would append them one by one, when the span
  // limits let every one of them through uncut; false, having appended nothing, otherwise (or
  // when the block is not usable): the caller then sets them one by one. True when not recording.
  bool addAttributes(const AttributeBlock& block);
  void setStatus(StatusCode code, std::string_view message = {});
  // Adds a link to another span (OTLP Span.links), e.g. the candidates a span could not choose
  // a parent among. Recording spans only; call before end().
  void addLink(const SpanContext& to);
  // Ends the span and hands its data to the worker's buffer. Further calls are no-ops.
  // `end_unix_nanos`: the instant it ends, when the caller has just read the tracer's clock for
  // it (one reading serves several uses); 0: now.
  void end(uint64_t end_unix_nanos = 0);
  // The name it was started (or last renamed) with; "" when not recording.
  std::string_view name() const { return record_ ? std::string_view(record_->name) : ""; }
  ~Span() {  // ends the span if still open
    if (tracer_ != nullptr || record_ != nullptr) {
      end();
    }
  }

 private:
  friend class Tracer;
  SpanContext context_;
  std::unique_ptr<SpanRecord> record_;
  Tracer* tracer_ = nullptr;
};

class Tracer {
 public:
  Tracer(std::shared_ptr<const Sampler> sampler, WorkerSpanBuffer* buffer,
         Clock clock = systemClockNanos, std::optional<uint64_t> seed = std::nullopt);

  // `start_unix_nanos` below: when the span starts, if the caller already read this tracer's clock
  // at that instant (e.g. the request's arrival); 0: now.
  //
  // A SERVER span: samples with the sampler; parent is the extracted remote context or nullptr
  // (then a new trace id is made).
  // `sampler`: the route's own, in place of the tracer's (nullptr: the tracer's).
  Span startServerSpan(std::string_view name, const SpanContext* remote_parent,
                       const Sampler* sampler = nullptr, uint64_t start_unix_nanos = 0) {
    return startSpan(name, SpanKind::Server, remote_parent, sampler, start_unix_nanos);
  }
  // A span of `kind` whose parent is a context rather than a local span: an extracted one, or
  // one handed over from another worker (the egress CLIENT span's inferred parent). Sampled
  // like a SERVER span; nullptr or an invalid parent starts a new trace.
  Span startSpan(std::string_view name, SpanKind kind, const SpanContext* parent,
                 const Sampler* sampler = nullptr, uint64_t start_unix_nanos = 0);
  // A child span (e.g. CLIENT) of a local parent; inherits its sampling decision.
  Span startChildSpan(std::string_view name, SpanKind kind, const Span& parent,
                      uint64_t start_unix_nanos = 0);

  uint64_t now() const { return clock_(); }
  // A reload's new sampler; spans already started keep their decision.
  void setSampler(std::shared_ptr<const Sampler> sampler) { sampler_ = std::move(sampler); }
  // Attribute limits for attributes set from now on (tracing.span_limits); defaults until set.
  void setSpanLimits(const config::SpanLimits& limits) { limits_ = limits; }

 private:
  friend class Span;
  std::unique_ptr<SpanRecord> takeRecord();
  // Gives `span` (whose context is set) a record to write into.
  void record(Span& span, const SpanId& parent_span_id, std::string_view name, SpanKind kind,
              uint64_t start_unix_nanos);
  void finish(std::unique_ptr<SpanRecord> record);  // hands it to the buffer, then recycles it

  std::shared_ptr<const Sampler> sampler_;
  config::SpanLimits limits_;
  WorkerSpanBuffer* buffer_;
  Clock clock_;
  IdGenerator ids_;
  std::vector<std::unique_ptr<SpanRecord>> free_records_;  // capacity kept for reuse
};

// Inline: each traced request sets ~20 attributes, and with the value's type known at the call
// site the common case compiles to a few stores (appendShortOtlpAttribute).
[[gnu::always_inline]] inline void Span::setAttribute(std::string_view key,
                                                      const AttributeValueView& value) {
  if (!record_) {
    return;
  }
  const config::SpanLimits& limits = tracer_->limits_;
  if (record_->attribute_count >= limits.attribute_count) {
    ++record_->dropped_attributes_count;
    return;
  }
  ++record_->attribute_count;
  if (!appendShortOtlpAttribute(record_->attributes, key, value, limits.attribute_value_length)) {
    appendOtlpAttribute(record_->attributes, key, value, limits.attribute_value_length);
  }
}

inline bool Span::addAttributes(const AttributeBlock& block) {
  if (!record_) {
    return true;
  }
  const config::SpanLimits& limits = tracer_->limits_;
  if (!block.usable() || block.longestText() > limits.attribute_value_length ||
      record_->attribute_count + uint64_t{block.count()} > limits.attribute_count) {
    return false;
  }
  record_->attribute_count += block.count();
  if (const std::string_view bytes = block.bytes(); !bytes.empty()) {
    std::memcpy(record_->attributes.extend(bytes.size()), bytes.data(), bytes.size());
  }
  return true;
}

// Builds the resource from config: service.name, host.name, telemetry.sdk.{name,language,version},
// then config resource attributes (which include OTEL_RESOURCE_ATTRIBUTES, applied by config/).
Resource makeResource(const config::TracingConfig& cfg);

}  // namespace sidetrace::tracing
