#include "tracing/sampler.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace sidetrace::tracing {

namespace {

class AlwaysOnSampler final : public Sampler {
 public:
  bool shouldSample(const SpanContext*, const TraceId&) const override { return true; }
  std::string description() const override { return "AlwaysOnSampler"; }
};

class AlwaysOffSampler final : public Sampler {
 public:
  bool shouldSample(const SpanContext*, const TraceId&) const override { return false; }
  std::string description() const override { return "AlwaysOffSampler"; }
};

// Deterministic on the trace id so every hop using the same ratio makes the same decision: the
// lower 8 bytes, read big-endian, are compared with ratio * 2^64.
class TraceIdRatioSampler final : public Sampler {
 public:
  explicit TraceIdRatioSampler(double ratio) : ratio_(ratio) {
    constexpr double kTwoTo64 = 18446744073709551616.0;
    double scaled = ratio * kTwoTo64;
    always_ = scaled >= kTwoTo64;
    threshold_ = always_ ? 0 : static_cast<uint64_t>(scaled);
  }

  bool shouldSample(const SpanContext*, const TraceId& trace_id) const override {
    if (always_) {
      return true;
    }
    uint64_t x = 0;
    for (size_t i = 8; i < 16; ++i) {
      x = (x << 8) | trace_id.bytes[i];
    }
    return x < threshold_;
  }

  std::string description() const override {
    char buf[64];
    std::snprintf(buf, sizeof buf, "TraceIdRatioBased{%f}", ratio_);
    return buf;
  }

 private:
  double ratio_;
  bool always_ = false;
  uint64_t threshold_ = 0;
};

// The spec's defaults: follow a remote parent's sampled flag; only roots reach the delegate.
// (The proxy has no local parents at sampling time: children inherit in the Tracer.)
class ParentBasedSampler final : public Sampler {
 public:
  explicit ParentBasedSampler(std::unique_ptr<Sampler> root) : root_(std::move(root)) {}

  bool shouldSample(const SpanContext* parent, const TraceId& trace_id) const override {
    if (parent == nullptr || !parent->valid()) {
      return root_->shouldSample(nullptr, trace_id);
    }
    return parent->sampled();
  }

  std::string description() const override {
    return "ParentBased{root:" + root_->description() + "}";
  }

 private:
  std::unique_ptr<Sampler> root_;
};

std::unique_ptr<Sampler> makeRatio(double ratio) {
  if (!(ratio >= 0.0 && ratio <= 1.0)) {  // also rejects NaN
    throw std::invalid_argument("sampler ratio must be in [0, 1], got " + std::to_string(ratio));
  }
  return std::make_unique<TraceIdRatioSampler>(ratio);
}

}  // namespace

std::unique_ptr<Sampler> makeSampler(const std::string& type, double ratio) {
  if (type == "always_on") {
    return std::make_unique<AlwaysOnSampler>();
  }
  if (type == "always_off") {
    return std::make_unique<AlwaysOffSampler>();
  }
  if (type == "traceidratio") {
    return makeRatio(ratio);
  }
  if (type == "parentbased_always_on") {
    return std::make_unique<ParentBasedSampler>(std::make_unique<AlwaysOnSampler>());
  }
  if (type == "parentbased_always_off") {
    return std::make_unique<ParentBasedSampler>(std::make_unique<AlwaysOffSampler>());
  }
  if (type == "parentbased_traceidratio") {
    return std::make_unique<ParentBasedSampler>(makeRatio(ratio));
  }
  throw std::invalid_argument("unknown sampler type: " + type);
}

}  // namespace sidetrace::tracing
