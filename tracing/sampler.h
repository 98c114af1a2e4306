#pragma once
// Samplers from the OpenTelemetry SDK spec. Called once per SERVER span on the worker thread;
// stateless and const so one instance is shared by all workers.

#include <memory>
#include <string>

#include "tracing/span_data.h"
#include "tracing/trace_context.h"

namespace sidetrace::tracing {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // parent: the extracted remote context, or nullptr for a root span.
  virtual bool shouldSample(const SpanContext* parent, const TraceId& trace_id) const = 0;
  virtual std::string description() const = 0;
};

// type: always_on | always_off | traceidratio | parentbased_always_on | parentbased_always_off |
// parentbased_traceidratio. ratio in [0,1] for the ratio kinds. Throws std::invalid_argument.
std::unique_ptr<Sampler> makeSampler(const std::string& type, double ratio);

}  // namespace sidetrace::tracing
