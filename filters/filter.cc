#include "filters/filter.h"

namespace sidetrace::filters {

FilterStatus FilterChain::onRequest(Stream& s) {
  FilterStatus status = FilterStatus::Continue;
  size_t ran = 0;
  while (ran < filters_.size()) {
    if (filters_[ran++]->onRequest(s) == FilterStatus::StopIteration) {
      status = FilterStatus::StopIteration;
      break;
    }
  }
  for (size_t i = 0; i < ran; ++i) {
    filters_[i]->onRouted(s);
  }
  return status;
}

void FilterChain::onUpstreamRequest(Stream& s, RequestHead& upstream_request) {
  for (auto& f : filters_) {
    f->onUpstreamRequest(s, upstream_request);
  }
}

void FilterChain::onUpstreamResult(Stream& s) {
  for (auto it = filters_.rbegin(); it != filters_.rend(); ++it) {
    (*it)->onUpstreamResult(s);
  }
}

void FilterChain::onResponse(Stream& s, ResponseHead& head) {
  for (auto it = filters_.rbegin(); it != filters_.rend(); ++it) {
    (*it)->onResponse(s, head);
  }
}

void FilterChain::onComplete(Stream& s) {
  for (auto it = filters_.rbegin(); it != filters_.rend(); ++it) {
    (*it)->onComplete(s);
  }
}

}  // namespace sidetrace::filters
