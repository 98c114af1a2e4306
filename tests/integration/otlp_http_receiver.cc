#include "tests/integration/otlp_http_receiver.h"

#include <google/protobuf/util/json_util.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tests/support/otlp_json_check.h"

namespace sidetrace::it {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
namespace otlp_collector = opentelemetry::proto::collector::trace::v1;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// RFC 1952 gzip with zlib; false when `in` is not one complete gzip member.
bool gunzip(const std::string& in, std::string& out) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    return false;
  }
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  out.clear();
  int rc = Z_OK;
  char chunk[16384];
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof chunk;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - zs.avail_out);
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      break;  // truncated input
    }
  }
  inflateEnd(&zs);
  return rc == Z_STREAM_END && zs.avail_in == 0;
}

}  // namespace

std::optional<std::string> HttpExport::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

struct OtlpHttpReceiver::Impl {
  asio::io_context io;
  std::unique_ptr<asio::ssl::context> ssl;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::thread thread;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<HttpAnswer> script;
  std::optional<HttpAnswer> fallback;
  int64_t reject = 0;
  std::vector<HttpExport> exports;
  std::vector<FlatSpan> spans;
  size_t failed_handshakes = 0;

  asio::awaitable<void> accept() {
    while (true) {
      boost::system::error_code ec;
      tcp::socket s = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      if (ssl) {
        asio::co_spawn(io, serveTls(std::move(s)), asio::detached);
      } else {
        asio::co_spawn(io, servePlain(std::move(s)), asio::detached);
      }
    }
  }

  asio::awaitable<void> servePlain(tcp::socket s) { co_await serve(s, ""); }

  asio::awaitable<void> serveTls(tcp::socket s) {
    asio::ssl::stream<tcp::socket> stream(std::move(s), *ssl);
    boost::system::error_code ec;
    co_await stream.async_handshake(asio::ssl::stream_base::server,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      std::lock_guard lock(mu);
      ++failed_handshakes;
      cv.notify_all();
      co_return;
    }
    const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
    co_await serve(stream, sni != nullptr ? sni : "");
  }

  template <typename Stream>
  asio::awaitable<void> serve(Stream& stream, std::string sni) {
    beast::flat_buffer buffer;
    while (true) {
      http::request<http::string_body> req;
      boost::system::error_code ec;
      co_await http::async_read(stream, buffer, req, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      http::response<http::string_body> res = handle(req, sni);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !req.keep_alive()) {
        co_return;
      }
    }
  }

  http::response<http::string_body> handle(const http::request<http::string_body>& req,
                                           const std::string& sni) {
    HttpExport rec;
    rec.method = std::string(req.method_string());
    rec.target = std::string(req.target());
    for (const auto& field : req) {
      rec.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    rec.raw_body = req.body();
    rec.sni = sni;
    rec.at = std::chrono::steady_clock::now();

    otlp_collector::ExportTraceServiceRequest decoded;
    const std::string encoding = lower(rec.header("content-encoding").value_or(""));
    const std::string type = lower(rec.header("content-type").value_or(""));
    const bool json = type == "application/json";
    if (encoding == "gzip") {
      if (!gunzip(rec.raw_body, rec.body)) {
        rec.decode_error = "Content-Encoding: gzip, but the body is not gzip";
      }
    } else if (encoding.empty()) {
      rec.body = rec.raw_body;
    } else {
      rec.decode_error = "unexpected Content-Encoding: " + encoding;
    }
    if (rec.decode_error.empty()) {
      if (json) {
        rec.decode_error = testsupport::parseOtlpJson(rec.body, &decoded);
      } else if (type == "application/x-protobuf") {
        if (!decoded.ParseFromString(rec.body)) {
          rec.decode_error = "not a protobuf ExportTraceServiceRequest";
        }
      } else {
        rec.decode_error = "unexpected Content-Type: " + type;
      }
    }
    for (const auto& rs : decoded.resource_spans()) {
      for (const auto& ss : rs.scope_spans()) {
        rec.spans += static_cast<size_t>(ss.spans_size());
      }
    }

    std::lock_guard lock(mu);
    HttpAnswer answer;
    bool scripted = true;
    if (!script.empty()) {
      answer = script.front();
      script.pop_front();
    } else if (fallback) {
      answer = *fallback;
    } else {
      scripted = false;
    }
    if (!scripted) {
      // The OTLP/HTTP success answer, in the request's encoding.
      otlp_collector::ExportTraceServiceResponse response;
      if (reject > 0) {
        response.mutable_partial_success()->set_rejected_spans(reject);
        response.mutable_partial_success()->set_error_message("fake collector: over quota");
      }
      if (json) {
        (void)google::protobuf::util::MessageToJsonString(response, &answer.body);
        answer.headers = {{"Content-Type", "application/json"}};
      } else {
        answer.body = response.SerializeAsString();
        answer.headers = {{"Content-Type", "application/x-protobuf"}};
      }
    }
    rec.answered = answer.status;
    if (answer.status / 100 == 2 && rec.decode_error.empty()) {
      flattenOtlpRequest(decoded.SerializeAsString(), &spans);
    }
    exports.push_back(std::move(rec));
    cv.notify_all();

    http::response<http::string_body> res{static_cast<http::status>(answer.status), req.version()};
    for (const auto& [k, v] : answer.headers) {
      res.set(k, v);
    }
    res.body() = answer.body;
    return res;
  }
};

OtlpHttpReceiver::OtlpHttpReceiver(std::optional<TlsFiles> tls) : impl_(std::make_unique<Impl>()) {
  if (tls) {
    impl_->ssl = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    boost::system::error_code ec;
    impl_->ssl->use_certificate_chain_file(tls->cert_file, ec);
    if (!ec) {
      impl_->ssl->use_private_key_file(tls->key_file, asio::ssl::context::pem, ec);
    }
    if (ec) {
      throw std::runtime_error("OtlpHttpReceiver: cannot load the TLS files: " + ec.message());
    }
  }
  asio::co_spawn(impl_->io, impl_->accept(), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

OtlpHttpReceiver::~OtlpHttpReceiver() {
  impl_->io.stop();
  impl_->thread.join();
}

uint16_t OtlpHttpReceiver::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void OtlpHttpReceiver::script(std::vector<HttpAnswer> answers) {
  std::lock_guard lock(impl_->mu);
  impl_->script.assign(answers.begin(), answers.end());
}

void OtlpHttpReceiver::answerAll(std::optional<HttpAnswer> fallback) {
  std::lock_guard lock(impl_->mu);
  impl_->fallback = std::move(fallback);
}

void OtlpHttpReceiver::rejectInEachResponse(int64_t spans) {
  std::lock_guard lock(impl_->mu);
  impl_->reject = spans;
}

std::vector<HttpExport> OtlpHttpReceiver::exports() const {
  std::lock_guard lock(impl_->mu);
  return impl_->exports;
}

size_t OtlpHttpReceiver::failedHandshakes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->failed_handshakes;
}

std::vector<FlatSpan> OtlpHttpReceiver::spans() const {
  std::lock_guard lock(impl_->mu);
  return impl_->spans;
}

std::vector<FlatSpan> OtlpHttpReceiver::waitForSpans(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] { return impl_->spans.size() >= n; });
  return impl_->spans;
}

std::vector<HttpExport> OtlpHttpReceiver::waitForExports(size_t n,
                                                         std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] { return impl_->exports.size() >= n; });
  return impl_->exports;
}

}  // namespace sidetrace::it
