#include "tests/integration/fake_upstream.h"

#include <limits>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

namespace sidetrace::it {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

std::optional<std::string> RecordedRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

size_t RecordedRequest::headerCount(std::string_view name) const {
  size_t n = 0;
  for (const auto& [k, v] : headers) {
    n += iequals(k, name) ? 1 : 0;
  }
  return n;
}

Behavior Behavior::fixed(int status, std::string body, Headers headers) {
  Behavior b;
  b.kind = Kind::Fixed;
  b.status = status;
  b.body = std::move(body);
  b.headers = std::move(headers);
  return b;
}

Behavior Behavior::chunked(std::string body, size_t chunks) {
  Behavior b;
  b.kind = Kind::Chunked;
  b.body = std::move(body);
  b.chunks = chunks;
  return b;
}

Behavior Behavior::stall(std::chrono::milliseconds delay, int status) {
  Behavior b;
  b.kind = Kind::Stall;
  b.delay = delay;
  b.status = status;
  b.body = "late";
  return b;
}

Behavior Behavior::close() {
  Behavior b;
  b.kind = Kind::Close;
  return b;
}

Behavior Behavior::large(uint64_t bytes) {
  Behavior b;
  b.kind = Kind::Large;
  b.large_bytes = bytes;
  return b;
}

Behavior Behavior::upgrade() {
  Behavior b;
  b.kind = Kind::Upgrade;
  b.status = 101;
  return b;
}

Behavior Behavior::sink() {
  Behavior b;
  b.kind = Kind::Sink;
  return b;
}

FakeUpstream::FakeUpstream() {
  if (!listener_.listen(0)) {
    throw std::runtime_error("FakeUpstream: cannot listen");
  }
  port_ = listener_.port();
  acceptor_ = std::thread([this] { acceptLoop(); });
}

FakeUpstream::~FakeUpstream() {
  stop();
}

void FakeUpstream::on(const std::string& path, Behavior b) {
  std::lock_guard lock(mu_);
  exact_[path] = std::move(b);
}

void FakeUpstream::onPrefix(const std::string& prefix, Behavior b) {
  std::lock_guard lock(mu_);
  prefixes_.emplace_back(prefix, std::move(b));
}

void FakeUpstream::setDefault(Behavior b) {
  std::lock_guard lock(mu_);
  default_ = std::move(b);
}

std::vector<RecordedRequest> FakeUpstream::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

size_t FakeUpstream::requestCount() const {
  std::lock_guard lock(mu_);
  return requests_.size();
}

std::vector<RecordedRequest> FakeUpstream::waitForRequests(size_t n,
                                                           std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
  return requests_;
}

void FakeUpstream::stop() {
  if (stopping_.exchange(true)) {
    return;
  }
  if (acceptor_.joinable()) {
    acceptor_.join();
  }
  listener_.close();
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mu_);
    workers.swap(workers_);
  }
  for (auto& t : workers) {
    t.join();
  }
}

void FakeUpstream::acceptLoop() {
  uint64_t next_id = 1;
  while (!stopping_) {
    TcpSocket sock = listener_.accept(std::chrono::milliseconds(50));
    if (!sock.valid()) {
      continue;
    }
    ++connections_;
    std::lock_guard lock(mu_);
    workers_.emplace_back(
        [this, s = std::move(sock), id = next_id++]() mutable { serve(std::move(s), id); });
  }
}

Behavior FakeUpstream::behaviorFor(const std::string& target) const {
  std::string path = target.substr(0, target.find('?'));
  std::lock_guard lock(mu_);
  if (auto it = exact_.find(path); it != exact_.end()) {
    return it->second;
  }
  for (const auto& [prefix, b] : prefixes_) {
    if (path.rfind(prefix, 0) == 0) {
      return b;
    }
  }
  return default_;
}

bool FakeUpstream::sleepUnlessStopped(std::chrono::milliseconds d) {
  auto deadline = Clock::now() + d;
  while (Clock::now() < deadline) {
    if (stopping_) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return !stopping_;
}

namespace {

std::string statusLine(int status) {
  auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
}

std::string fixedResponse(int status, const Headers& headers, const std::string& body,
                          bool keep_alive) {
  std::string out = statusLine(status);
  for (const auto& [k, v] : headers) {
    out += k + ": " + v + "\r\n";
  }
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive) {
    out += "Connection: close\r\n";
  }
  out += "\r\n";
  out += body;
  return out;
}

}  // namespace

void FakeUpstream::serve(TcpSocket sock, uint64_t id) {
  std::string buf;
  while (!stopping_) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(512ull * 1024 * 1024);
    parser.header_limit(1024 * 1024);
    parser.eager(true);
    bool sent_continue = false;
    // Sink: decided from the request line before the header is parsed (the body limit applies
    // when the header completes); the body is then counted and dropped after every put.
    bool sink_checked = false;
    bool sink = false;
    uint64_t sink_bytes = 0;
    for (;;) {
      boost::beast::error_code ec;
      size_t n = 0;
      if (!sink_checked && !parser.is_header_done()) {
        if (auto eol = buf.find("\r\n"); eol != std::string::npos) {
          sink_checked = true;
          std::string line = buf.substr(0, eol);
          auto sp1 = line.find(' ');
          auto sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
          if (sp2 != std::string::npos &&
              behaviorFor(line.substr(sp1 + 1, sp2 - sp1 - 1)).kind == Behavior::Kind::Sink) {
            sink = true;
            parser.body_limit(std::numeric_limits<std::uint64_t>::max());
          }
        }
      }
      if (!buf.empty()) {
        n = parser.put(boost::asio::buffer(buf.data(), buf.size()), ec);
        buf.erase(0, n);
        if (sink) {
          sink_bytes += parser.get().body().size();
          parser.get().body().clear();
        }
        if (ec && ec != http::error::need_more) {
          sock.sendAll(fixedResponse(400, {}, "fake upstream: bad request\n", false));
          return;
        }
      }
      if (parser.is_header_done() && !parser.is_done() && !sent_continue) {
        auto expect = parser.get()[http::field::expect];
        if (iequals(std::string_view(expect.data(), expect.size()), "100-continue")) {
          sock.sendAll("HTTP/1.1 100 Continue\r\n\r\n");
          sent_continue = true;
        }
      }
      if (parser.is_done()) {
        break;
      }
      if (!ec && n > 0 && !buf.empty()) {
        continue;
      }
      size_t before = buf.size();
      auto r = sock.recvSome(buf, std::chrono::milliseconds(100));
      bytes_received_ += buf.size() - before;
      if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
        return;
      }
      if (stopping_) {
        return;
      }
    }

    auto& msg = parser.get();
    RecordedRequest rec;
    rec.method = std::string(msg.method_string());
    rec.target = std::string(msg.target());
    rec.version = static_cast<int>(msg.version());
    for (const auto& f : msg) {
      rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    rec.body = msg.body();
    rec.chunked = parser.chunked();
    rec.connection_id = id;
    bool keep_alive = msg.keep_alive();
    Behavior b = behaviorFor(rec.target);
    Headers echo_headers = {{"x-echo-method", rec.method}, {"x-echo-target", rec.target}};
    std::string body = rec.body;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(std::move(rec));
    }
    cv_.notify_all();

    switch (b.kind) {
      case Behavior::Kind::Echo: {
        echo_headers.emplace_back("Content-Type", "application/octet-stream");
        if (!sock.sendAll(fixedResponse(200, echo_headers, body, keep_alive))) {
          return;
        }
        break;
      }
      case Behavior::Kind::Stall:
        if (!sleepUnlessStopped(b.delay)) {
          return;
        }
        [[fallthrough]];
      case Behavior::Kind::Fixed:
        if (!sock.sendAll(fixedResponse(b.status, b.headers, b.body, keep_alive))) {
          return;
        }
        break;
      case Behavior::Kind::Chunked: {
        std::string out = statusLine(b.status);
        for (const auto& [k, v] : b.headers) {
          out += k + ": " + v + "\r\n";
        }
        out += "Transfer-Encoding: chunked\r\n\r\n";
        if (!sock.sendAll(out)) {
          return;
        }
        size_t piece = std::max<size_t>(1, (b.body.size() + b.chunks - 1) / b.chunks);
        for (size_t off = 0; off < b.body.size(); off += piece) {
          std::string chunk = b.body.substr(off, piece);
          char size_hex[32];
          std::snprintf(size_hex, sizeof size_hex, "%zx\r\n", chunk.size());
          // Separate writes with a pause so the proxy sees the body arrive in pieces.
          if (!sock.sendAll(std::string(size_hex) + chunk + "\r\n")) {
            return;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (!sock.sendAll("0\r\n\r\n")) {
          return;
        }
        break;
      }
      case Behavior::Kind::Close:
        return;
      case Behavior::Kind::Sink: {
        std::string count = std::to_string(sink_bytes);
        if (!sock.sendAll(fixedResponse(200, {{"x-sink-bytes", count}}, count, keep_alive))) {
          return;
        }
        break;
      }
      case Behavior::Kind::Large: {
        std::string head = statusLine(200) + "Content-Type: application/octet-stream\r\n" +
                           "Content-Length: " + std::to_string(b.large_bytes) + "\r\n\r\n";
        if (!sock.sendAll(head)) {
          return;
        }
        std::string block;
        for (uint64_t off = 0; off < b.large_bytes;) {
          uint64_t len = std::min<uint64_t>(64 * 1024, b.large_bytes - off);
          block.resize(len);
          for (uint64_t i = 0; i < len; ++i) {
            block[i] = patternByte(off + i);
          }
          if (!sock.sendAll(block) || stopping_) {
            return;
          }
          off += len;
        }
        break;
      }
      case Behavior::Kind::Upgrade: {
        std::string out =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        if (!sock.sendAll(out)) {
          return;
        }
        // Tunnel: echo every byte back until the peer closes.
        while (!stopping_) {
          if (!buf.empty()) {
            if (!sock.sendAll(buf)) {
              return;
            }
            buf.clear();
          }
          auto r = sock.recvSome(buf, std::chrono::milliseconds(100));
          if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
            return;
          }
        }
        return;
      }
    }
    if (!keep_alive) {
      return;
    }
  }
}

}  // namespace sidetrace::it
