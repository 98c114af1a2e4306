#include "tracing/tracer.h"

#include <unistd.h>

#include <chrono>
#include <climits>
#include <utility>

#include "tracing/otlp_encode.h"

namespace sidetrace::tracing {

void AttributeBlock::setAttribute(std::string_view key, const AttributeValueView& value) {
  if (const auto* text = std::get_if<std::string_view>(&value)) {
    usable_ = usable_ && detail::isAscii(text->data(), text->size());
    longest_text_ = std::max(longest_text_, text->size());
  }
  ++count_;
  appendOtlpAttribute(bytes_, key, value);
}

namespace {
// Records kept for reuse per worker; more than this many spans open at once just allocate.
constexpr size_t kMaxFreeRecords = 1024;
}  // namespace

uint64_t systemClockNanos() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void Span::setName(std::string_view name) {
  if (record_) {
    record_->name.assign(name);
  }
}

// OpenTelemetry's rules: Unset is never set explicitly, Error replaces Unset, Ok is final (and
// overrides an earlier Error); a description is kept only with Error.
void Span::setStatus(StatusCode code, std::string_view message) {
  if (!record_ || code == StatusCode::Unset || record_->status == StatusCode::Ok) {
    return;
  }
  record_->status = code;
  if (code == StatusCode::Error) {
    record_->status_message.assign(message);
  } else {
    record_->status_message.clear();
  }
}

void Span::end(uint64_t end_unix_nanos) {
  Tracer* tracer = std::exchange(tracer_, nullptr);
  if (tracer == nullptr || !record_) {
    record_.reset();
    return;
  }
  record_->end_unix_nanos = end_unix_nanos != 0 ? end_unix_nanos : tracer->now();
  tracer->finish(std::move(record_));
}

Tracer::Tracer(std::shared_ptr<const Sampler> sampler, WorkerSpanBuffer* buffer, Clock clock,
               std::optional<uint64_t> seed)
    : sampler_(std::move(sampler)),
      buffer_(buffer),
      clock_(std::move(clock)),
      ids_(seed ? IdGenerator(*seed) : IdGenerator()) {}

std::unique_ptr<SpanRecord> Tracer::takeRecord() {
  if (free_records_.empty()) {
    return std::make_unique<SpanRecord>();
  }
  auto record = std::move(free_records_.back());
  free_records_.pop_back();
  return record;
}

void Span::addLink(const SpanContext& to) {
  if (record_) {
    appendOtlpLink(record_->links, to.trace_id, to.span_id, to.flags);
  }
}

void Span::setStringArrayAttribute(std::string_view key, const std::string_view* values,
                                   size_t count) {
  if (!record_) {
    return;
  }
  if (record_->attribute_count >= tracer_->limits_.attribute_count) {
    ++record_->dropped_attributes_count;
    return;
  }
  ++record_->attribute_count;
  appendOtlpStringArrayAttribute(record_->attributes, key, values, count,
                                 tracer_->limits_.attribute_value_length);
}

void Tracer::record(Span& span, const SpanId& parent_span_id, std::string_view name, SpanKind kind,
                    uint64_t start_unix_nanos) {
  span.record_ = takeRecord();
  SpanRecord& r = *span.record_;
  r.trace_id = span.context_.trace_id;
  r.span_id = span.context_.span_id;
  r.parent_span_id = parent_span_id;
  if (span.context_.tracestate.empty()) {
    r.tracestate.clear();  // a recycled record may hold an earlier span's
  } else {
    r.tracestate = span.context_.tracestate;
  }
  r.flags = span.context_.flags;
  r.name.assign(name);
  r.kind = kind;
  r.start_unix_nanos = start_unix_nanos != 0 ? start_unix_nanos : clock_();
}

Span Tracer::startSpan(std::string_view name, SpanKind kind, const SpanContext* given_parent,
                       const Sampler* sampler, uint64_t start_unix_nanos) {
  const SpanContext* parent =
      given_parent != nullptr && given_parent->valid() ? given_parent : nullptr;
  Span span;
  span.tracer_ = this;
  span.context_.trace_id = parent ? parent->trace_id : ids_.traceId();
  span.context_.span_id = ids_.spanId();
  if (sampler == nullptr) {
    sampler = sampler_.get();
  }
  bool sampled = sampler != nullptr && sampler->shouldSample(parent, span.context_.trace_id);
  // The random flag describes the trace id, which a continued trace keeps. B3 debug passes on
  // only with a sampled span (it implies sampled: never send it with flags 00).
  span.context_.flags = static_cast<uint8_t>((sampled ? kFlagSampled : 0) |
                                             (parent ? parent->flags & kFlagRandom : 0));
  span.context_.debug = sampled && parent != nullptr && parent->debug;
  if (parent && !parent->tracestate.empty()) {
    span.context_.tracestate = parent->tracestate;
  }
  if (buffer_ != nullptr) {
    buffer_->countStarted();
  }
  // Without an exporter or the /tracez view there is nothing to record for.
  if (sampled && buffer_ != nullptr && buffer_->recording()) {
    record(span, parent ? parent->span_id : SpanId{}, name, kind, start_unix_nanos);
  }
  return span;
}

Span Tracer::startChildSpan(std::string_view name, SpanKind kind, const Span& parent,
                            uint64_t start_unix_nanos) {
  Span span;
  if (!parent.context().valid()) {
    return span;  // no parent context (tracing off for this stream): nothing to propagate
  }
  span.tracer_ = this;
  span.context_.trace_id = parent.context().trace_id;
  span.context_.span_id = ids_.spanId();
  span.context_.flags = parent.context().flags;
  span.context_.debug = parent.context().debug;
  if (!parent.context().tracestate.empty()) {
    span.context_.tracestate = parent.context().tracestate;
  }
  if (buffer_ != nullptr) {
    buffer_->countStarted();
  }
  if (parent.recording()) {
    record(span, parent.context().span_id, name, kind, start_unix_nanos);
  }
  return span;
}

void Tracer::finish(std::unique_ptr<SpanRecord> record) {
  if (buffer_) {
    buffer_->add(*record);
  }
  if (free_records_.size() < kMaxFreeRecords) {
    record->attributes.clear();  // clear() keeps capacity: the next span appends without allocating
    record->attribute_count = 0;
    record->links.clear();
    record->dropped_attributes_count = 0;
    record->status = StatusCode::Unset;
    record->status_message.clear();
    free_records_.push_back(std::move(record));
  }
}

Resource makeResource(const config::TracingConfig& cfg) {
  Resource r;
  auto put = [&r](std::string key, AttributeValue value) {
    for (auto& attr : r.attributes) {
      if (attr.key == key) {
        attr.value = std::move(value);
        return;
      }
    }
    r.attributes.push_back(Attribute{std::move(key), std::move(value)});
  };
  put("service.name", cfg.service_name);
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') {
    put("host.name", std::string(host));
  }
  put("telemetry.sdk.name", std::string("sidetrace"));
  put("telemetry.sdk.language", std::string("cpp"));
  put("telemetry.sdk.version", std::string(SIDETRACE_VERSION));
  for (const auto& [key, value] : cfg.resource) {
    put(key, value);
  }
  return r;
}

}  // namespace sidetrace::tracing
