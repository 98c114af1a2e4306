#include "filters/inflight_registry.h"

#include <utility>

namespace sidetrace::filters {

const char* parentSourceName(ParentSource s) {
  switch (s) {
    case ParentSource::Header:
      return "header";
    case ParentSource::RequestId:
      return "request_id";
    case ParentSource::SingleInflight:
      return "single_inflight";
    case ParentSource::None:
      return "none";
  }
  return "none";
}

uint64_t InflightRegistry::add(std::string_view request_id, const tracing::SpanContext& hop) {
  std::lock_guard lock(mu_);
  if (size_ == entries_.size()) {
    entries_.emplace_back();
  }
  Entry& e = entries_[size_++];
  e.token = next_token_++;
  e.request_id.assign(request_id);
  e.hop = hop;
  return e.token;
}

void InflightRegistry::remove(uint64_t token) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < size_; ++i) {
    if (entries_[i].token == token) {
      if (i != size_ - 1) {
        std::swap(entries_[i], entries_[size_ - 1]);
      }
      --size_;
      return;
    }
  }
}

size_t InflightRegistry::size() const {
  std::lock_guard lock(mu_);
  return size_;
}

ParentInference InflightRegistry::infer(std::optional<std::string_view> request_id) const {
  ParentInference out;
  std::lock_guard lock(mu_);
  // request_id: the id must name exactly one request in flight. A client may send any id on its
  // inbound request, so two in flight with one id decide nothing (a wrong parent is worse than
  // none).
  if (request_id && !request_id->empty()) {
    const Entry* match = nullptr;
    size_t matches = 0;
    for (size_t i = 0; i < size_; ++i) {
      if (entries_[i].request_id == *request_id) {
        match = &entries_[i];
        ++matches;
      }
    }
    if (matches == 1) {
      if (match->hop.valid()) {
        out.source = ParentSource::RequestId;
        out.parent = match->hop;
      }
      return out;  // the cause is known and untraced: no parent, and no other candidate
    }
  }
  if (size_ == 1 && entries_[0].hop.valid()) {
    out.source = ParentSource::SingleInflight;
    out.parent = entries_[0].hop;
    return out;
  }
  for (size_t i = 0; i < size_ && out.link_count < kMaxParentLinks; ++i) {
    if (entries_[i].hop.valid()) {
      out.links[out.link_count++] = entries_[i].hop;
    }
  }
  return out;
}

}  // namespace sidetrace::filters
