#include "tracing/tracer.h"

#include <unistd.h>

#include <chrono>
#include <climits>
#include <utility>

namespace sidetrace::tracing {

namespace {
// A proxy span carries about 15 attributes; reserving once avoids regrowing (and moving) them.
constexpr size_t kExpectedAttributes = 16;
}  // namespace

uint64_t systemClockNanos() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Span::Span(Span&& other) noexcept
    : context_(std::move(other.context_)),
      data_(std::move(other.data_)),
      tracer_(std::exchange(other.tracer_, nullptr)) {}

Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    end();
    context_ = std::move(other.context_);
    data_ = std::move(other.data_);
    tracer_ = std::exchange(other.tracer_, nullptr);
  }
  return *this;
}

Span::~Span() {
  end();
}

void Span::setName(std::string name) {
  if (data_) {
    data_->name = std::move(name);
  }
}

void Span::setAttribute(std::string_view key, AttributeValue value) {
  if (!data_) {
    return;
  }
  // OTLP requires unique keys: a second set replaces the first.
  for (auto& attr : data_->attributes) {
    if (attr.key == key) {
      attr.value = std::move(value);
      return;
    }
  }
  data_->attributes.push_back(Attribute{std::string(key), std::move(value)});
}

// OpenTelemetry's rules: Unset is never set explicitly, Error replaces Unset, Ok is final (and
// overrides an earlier Error); a description is kept only with Error.
void Span::setStatus(StatusCode code, std::string message) {
  if (!data_ || code == StatusCode::Unset || data_->status == StatusCode::Ok) {
    return;
  }
  data_->status = code;
  data_->status_message = code == StatusCode::Error ? std::move(message) : std::string();
}

void Span::end() {
  Tracer* tracer = std::exchange(tracer_, nullptr);
  if (tracer == nullptr || !data_) {
    data_.reset();
    return;
  }
  data_->end_unix_nanos = tracer->now();
  tracer->finish(std::move(*data_));
  data_.reset();
}

Tracer::Tracer(std::shared_ptr<const Sampler> sampler, WorkerSpanBuffer* buffer, Clock clock,
               std::optional<uint64_t> seed)
    : sampler_(std::move(sampler)),
      buffer_(buffer),
      clock_(std::move(clock)),
      ids_(seed ? IdGenerator(*seed) : IdGenerator()) {}

Span Tracer::startServerSpan(std::string name, const SpanContext* remote_parent) {
  const SpanContext* parent =
      remote_parent != nullptr && remote_parent->valid() ? remote_parent : nullptr;
  Span span;
  span.tracer_ = this;
  span.context_.trace_id = parent ? parent->trace_id : ids_.traceId();
  span.context_.span_id = ids_.spanId();
  bool sampled = sampler_ && sampler_->shouldSample(parent, span.context_.trace_id);
  span.context_.flags = sampled ? kFlagSampled : 0;
  if (parent) {
    span.context_.tracestate = parent->tracestate;
  }
  if (auto* stats = buffer_ ? buffer_->stats() : nullptr) {
    stats->spans_started.fetch_add(1, std::memory_order_relaxed);
  }
  if (sampled) {
    span.data_ = std::make_unique<SpanData>();
    SpanData& d = *span.data_;
    d.attributes.reserve(kExpectedAttributes);
    d.trace_id = span.context_.trace_id;
    d.span_id = span.context_.span_id;
    if (parent) {
      d.parent_span_id = parent->span_id;
    }
    d.tracestate = span.context_.tracestate;
    d.flags = span.context_.flags;
    d.name = std::move(name);
    d.kind = SpanKind::Server;
    d.start_unix_nanos = clock_();
  }
  return span;
}

Span Tracer::startChildSpan(std::string name, SpanKind kind, const Span& parent) {
  Span span;
  if (!parent.context().valid()) {
    return span;  // no parent context (tracing off for this stream): nothing to propagate
  }
  span.tracer_ = this;
  span.context_.trace_id = parent.context().trace_id;
  span.context_.span_id = ids_.spanId();
  span.context_.flags = parent.context().flags;
  span.context_.tracestate = parent.context().tracestate;
  if (auto* stats = buffer_ ? buffer_->stats() : nullptr) {
    stats->spans_started.fetch_add(1, std::memory_order_relaxed);
  }
  if (parent.recording()) {
    span.data_ = std::make_unique<SpanData>();
    SpanData& d = *span.data_;
    d.attributes.reserve(kExpectedAttributes);
    d.trace_id = span.context_.trace_id;
    d.span_id = span.context_.span_id;
    d.parent_span_id = parent.context().span_id;
    d.tracestate = span.context_.tracestate;
    d.flags = span.context_.flags;
    d.name = std::move(name);
    d.kind = kind;
    d.start_unix_nanos = clock_();
  }
  return span;
}

void Tracer::finish(SpanData&& data) {
  if (buffer_) {
    buffer_->add(std::move(data));
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
