#include "tests/integration/http_client.h"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>

namespace sidetrace::it {

namespace http = boost::beast::http;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

size_t HttpResponse::headerCount(std::string_view name) const {
  size_t n = 0;
  for (const auto& [k, v] : headers) {
    n += iequals(k, name) ? 1 : 0;
  }
  return n;
}

std::string buildRequest(std::string_view method, std::string_view target, const Headers& headers,
                         std::string_view body, std::string_view version, bool add_host) {
  std::string out;
  out.append(method).append(" ").append(target).append(" ").append(version).append("\r\n");
  bool has_host = false;
  bool has_length = false;
  for (const auto& [k, v] : headers) {
    has_host |= iequals(k, "host");
    has_length |= iequals(k, "content-length") || iequals(k, "transfer-encoding");
  }
  if (add_host && !has_host) {
    out.append("Host: 127.0.0.1\r\n");
  }
  for (const auto& [k, v] : headers) {
    out.append(k).append(": ").append(v).append("\r\n");
  }
  if (!body.empty() && !has_length) {
    out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  out.append("\r\n");
  out.append(body);
  return out;
}

HttpConnection::HttpConnection(uint16_t port) {
  sock_.connect(port);
}

std::optional<HttpResponse> HttpConnection::readResponse(Millis timeout, bool head_request) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(256ull * 1024 * 1024);
  parser.header_limit(1024 * 1024);
  parser.eager(true);
  parser.skip(head_request);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool eof = false;
  for (;;) {
    boost::beast::error_code ec;
    if (!buf_.empty()) {
      size_t n = parser.put(boost::asio::buffer(buf_.data(), buf_.size()), ec);
      buf_.erase(0, n);
      if (ec && ec != http::error::need_more) {
        error_ = "parse error: " + ec.message();
        return std::nullopt;
      }
      if (!ec && !parser.is_done() && n > 0 && !buf_.empty()) {
        continue;
      }
    }
    if (parser.is_done()) {
      break;
    }
    if (eof) {
      parser.put_eof(ec);
      if (!ec && parser.is_done()) {
        break;
      }
      error_ = "connection closed before the response was complete";
      return std::nullopt;
    }
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error_ = "timeout waiting for a response";
      return std::nullopt;
    }
    auto r = sock_.recvSome(buf_, left);
    if (r == TcpSocket::ReadResult::Closed || r == TcpSocket::ReadResult::Error) {
      eof = true;
    }
  }
  return toHttpResponse(parser);
}

HttpResponse toHttpResponse(http::response_parser<http::string_body>& parser) {
  auto& msg = parser.get();
  HttpResponse resp;
  resp.status = static_cast<int>(msg.result_int());
  resp.reason = std::string(msg.reason());
  resp.version = static_cast<int>(msg.version());
  for (const auto& f : msg) {
    resp.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  }
  resp.body = std::move(msg.body());
  resp.keep_alive = msg.keep_alive();
  resp.chunked = parser.chunked();
  return resp;
}

std::optional<HttpResponse> HttpConnection::request(std::string_view method,
                                                    std::string_view target, const Headers& headers,
                                                    std::string_view body, Millis timeout) {
  if (!send(buildRequest(method, target, headers, body))) {
    error_ = "send failed";
    return std::nullopt;
  }
  return readResponse(timeout, method == "HEAD");
}

std::optional<HttpResponse> httpRequest(uint16_t port, std::string_view method,
                                        std::string_view target, const Headers& headers,
                                        std::string_view body, Millis timeout) {
  HttpConnection conn(port);
  if (!conn.connected()) {
    return std::nullopt;
  }
  return conn.request(method, target, headers, body, timeout);
}

}  // namespace sidetrace::it
