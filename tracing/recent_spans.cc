#include "tracing/recent_spans.h"

namespace sidetrace::tracing {

RecentSpans::RecentSpans(size_t max_bytes) : max_bytes_(max_bytes) {}

void RecentSpans::add(const SpanBatch& batch) {
  if (batch.count == 0) {
    return;
  }
  SpanBatch kept = batch;
  if (kept.held + kPerBatch > max_bytes_) {
    // Only with a bound about the size of a batch: drop its oldest spans until the rest fits.
    std::string_view run = kept.bytes;
    size_t count = kept.count;
    while (count > 1 && run.size() + kPerBatch > max_bytes_) {
      run.remove_prefix(otlpSpansPrefixBytes(run, 1));
      --count;
    }
    if (run.size() + kPerBatch > max_bytes_) {
      ++too_large_;
      return;
    }
    kept = SpanBatch::copyOf(run, count);
  }
  held_ += kept.held + kPerBatch;
  used_ += kept.bytes.size();
  batches_.push_back(std::move(kept));
  while (held_ > max_bytes_) {
    const SpanBatch& oldest = batches_.front();
    held_ -= oldest.held + kPerBatch;
    used_ -= oldest.bytes.size();
    batches_.pop_front();
  }
}

void RecentSpans::copyTo(std::string& out) const {
  for (const SpanBatch& b : batches_) {
    out.append(b.bytes);
  }
}

}  // namespace sidetrace::tracing
