#include "proxy/request_state.h"

#include <charconv>

namespace sidetrace::proxy {

void Gather::build(std::string_view head, std::span<const std::string_view> pieces, bool chunked,
                   bool last, const filters::HeaderMap* trailers) {
  bufs.clear();
  bytes = 0;
  if (!head.empty()) {
    bufs.emplace_back(head.data(), head.size());
  }
  for (auto p : pieces) {
    bytes += p.size();
  }
  if (bytes > 0) {
    if (chunked) {
      auto [end, ec] = std::to_chars(size_line, size_line + 20, bytes, 16);
      (void)ec;
      *end++ = '\r';
      *end++ = '\n';
      bufs.emplace_back(size_line, static_cast<size_t>(end - size_line));
    }
    for (auto p : pieces) {
      if (!p.empty()) {
        bufs.emplace_back(p.data(), p.size());
      }
    }
    if (chunked) {
      bufs.emplace_back("\r\n", 2);
    }
  }
  if (last && chunked) {
    if (trailers != nullptr && trailers->size() > 0) {
      last_chunk.clear();
      appendLastChunk(last_chunk, *trailers);
      bufs.emplace_back(last_chunk.data(), last_chunk.size());
    } else {
      bufs.emplace_back("0\r\n\r\n", 5);
    }
  }
}

RequestState::RequestState(const boost::asio::any_io_executor& ex, const config::Limits& limits)
    : parser(Http1Parser::Kind::Request, limits.max_request_headers_bytes,
             limits.max_request_headers_count),
      exchange(ex),
      deadline(ex) {}

std::unique_ptr<RequestState> RequestStatePool::take(const boost::asio::any_io_executor& ex,
                                                     const config::Limits& limits) {
  if (free_.empty()) {
    return std::make_unique<RequestState>(ex, limits);
  }
  auto s = std::move(free_.back());
  free_.pop_back();
  s->parser.setLimits(limits.max_request_headers_bytes, limits.max_request_headers_count);
  return s;
}

void RequestStatePool::give(std::unique_ptr<RequestState> s) {
  if (closed_ || free_.size() >= max_free_) {
    return;
  }
  s->parser.reset();
  s->stream.reset();
  s->used = false;
  for (upstream::Deadline* d : {&s->exchange.route, &s->exchange.per_try, &s->deadline}) {
    d->disarm();
    d->watch(nullptr);
    d->onExpire(nullptr, nullptr);
  }
  free_.push_back(std::move(s));
}

void RequestStatePool::close() {
  closed_ = true;
  free_.clear();
}

}  // namespace sidetrace::proxy
