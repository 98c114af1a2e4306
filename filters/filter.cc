#include "filters/filter.h"

namespace sidetrace::filters {

FilterStatus FilterChain::onRequest(Stream& s) {
  for (auto& f : filters_) {
    if (f->onRequest(s) == FilterStatus::StopIteration) {
      return FilterStatus::StopIteration;
    }
  }
  return FilterStatus::Continue;
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
