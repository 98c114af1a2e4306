// The OTLP/HTTP transport against a scripted HTTP/1.1 server on loopback: request bytes, response
// framing, keep-alive reuse, reconnects, the deadline. (TLS is covered end to end in
// tests/integration/otlp_http_test.cc.)

#include "proxy/otlp_http_client.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proxy/http1_codec.h"

namespace sidetrace::proxy {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

struct Received {
  filters::RequestHead head;
  std::string body;
  int connection = 0;
};

struct Reply {
  std::string bytes;  // "" : no answer (the request hangs)
  bool close_after = false;
};

// Serves each connection with a coroutine on its own thread; `script` answers request n (0-based,
// over all connections).
class ScriptedServer {
 public:
  using Script = std::function<Reply(const Received&, int n)>;

  explicit ScriptedServer(Script script)
      : script_(std::move(script)),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    asio::co_spawn(io_, accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ScriptedServer() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string url(const std::string& path = "/v1/traces") const {
    return "http://127.0.0.1:" + std::to_string(port()) + path;
  }
  std::vector<Received> requests() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  int connections() const {
    std::lock_guard lock(mu_);
    return connections_;
  }

 private:
  asio::awaitable<void> accept() {
    while (true) {
      boost::system::error_code ec;
      tcp::socket s =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      int id = 0;
      {
        std::lock_guard lock(mu_);
        id = ++connections_;
      }
      asio::co_spawn(io_, serve(std::move(s), id), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket s, int id) {
    Http1Parser parser(Http1Parser::Kind::Request, 64 * 1024);
    Received current;
    char buf[4096];
    while (true) {
      boost::system::error_code ec;
      size_t n = co_await s.async_read_some(asio::buffer(buf),
                                            asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        co_return;
      }
      std::string_view in(buf, n);
      while (!in.empty()) {
        FeedResult r = parser.feed(in.data(), in.size());
        if (r.error != ParseError::None) {
          co_return;
        }
        for (auto piece : r.body) {
          current.body.append(piece);
        }
        in.remove_prefix(r.consumed);
        if (!r.message_complete) {
          continue;
        }
        current.head = parser.request();
        current.connection = id;
        int index = 0;
        {
          std::lock_guard lock(mu_);
          received_.push_back(current);
          index = static_cast<int>(received_.size()) - 1;
        }
        Reply reply = script_(current, index);
        current = {};
        if (!reply.bytes.empty()) {
          co_await asio::async_write(s, asio::buffer(reply.bytes),
                                     asio::redirect_error(asio::use_awaitable, ec));
        }
        if (reply.close_after) {
          s.close(ec);
          co_return;
        }
      }
    }
  }

  Script script_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Received> received_;
  int connections_ = 0;
};

Reply ok(std::string body = "", std::string extra = "") {
  return {"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body};
}

config::ExporterConfig cfgFor(const std::string& url) {
  config::ExporterConfig cfg;
  cfg.protocol = "http/protobuf";
  cfg.endpoint = url;
  return cfg;
}

SteadyClock::time_point in(milliseconds d) {
  return SteadyClock::now() + d;
}

TEST(OtlpHttpClientTest, PostsAndReusesOneConnection) {
  ScriptedServer server([](const Received&, int n) {
    return ok(n == 0 ? "\x0a\x02\x08\x01" : "", "X-N: " + std::to_string(n) + "\r\n");
  });
  auto client = makeOtlpHttpTransport(cfgFor(server.url("/otlp/v1/traces?tenant=a")));
  const tracing::HttpHeaders headers{{"Content-Type", "application/x-protobuf"},
                                     {"Authorization", "Bearer t"}};
  const std::string body("\x0a\x00\xff body", 8);
  auto r = client->post(headers, body, in(milliseconds(5000)));
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "\x0a\x02\x08\x01");
  EXPECT_EQ(r.content_type, "application/x-protobuf");
  auto r2 = client->post(headers, "second", in(milliseconds(5000)));
  EXPECT_EQ(r2.status, 200) << r2.error;
  EXPECT_EQ(r2.body, "");

  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(server.connections(), 1) << "the connection is kept alive between exports";
  const auto& h = reqs[0].head;
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/otlp/v1/traces?tenant=a");
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_EQ(h.headers.get("host").value_or(""), "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(h.headers.get("content-length").value_or(""), "8");
  EXPECT_EQ(h.headers.get("authorization").value_or(""), "Bearer t");
  EXPECT_EQ(h.headers.count("content-type"), 1u);
  EXPECT_EQ(reqs[0].body, body);
  EXPECT_EQ(reqs[1].body, "second");
}

TEST(OtlpHttpClientTest, ResponseFraming) {
  ScriptedServer server([](const Received&, int n) -> Reply {
    switch (n) {
      case 0:  // chunked, with Retry-After
        return {
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Type: "
            "application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"};
      case 1:  // an interim 100 before the real answer
        return {
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n"
            "Content-Length: 4\r\n\r\nbusy"};
      default:  // delimited by the connection's close
        return {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof", true};
    }
  });
  auto client = makeOtlpHttpTransport(cfgFor(server.url()));
  auto r = client->post({}, "a", in(milliseconds(5000)));
  EXPECT_EQ(r.status, 429) << r.error;
  EXPECT_EQ(r.retry_after, "7");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, "hello");
  r = client->post({}, "b", in(milliseconds(5000)));
  EXPECT_EQ(r.status, 503) << r.error;
  EXPECT_EQ(r.body, "busy");
  EXPECT_EQ(r.retry_after, "");
  r = client->post({}, "c", in(milliseconds(5000)));
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "until eof");
  EXPECT_EQ(server.connections(), 1);
  r = client->post({}, "d", in(milliseconds(5000)));  // the server closed: a new connection
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(server.connections(), 2);
}

TEST(OtlpHttpClientTest, ConnectionCloseIsHonoured) {
  ScriptedServer server([](const Received&, int) { return ok("", "Connection: close\r\n"); });
  auto client = makeOtlpHttpTransport(cfgFor(server.url()));
  for (int i = 0; i < 3; ++i) {
    auto r = client->post({}, "x", in(milliseconds(5000)));
    EXPECT_EQ(r.status, 200) << r.error;
  }
  EXPECT_EQ(server.connections(), 3);
}

// A collector that drops an idle kept-alive connection: the next export must not fail for it.
TEST(OtlpHttpClientTest, StaleConnectionIsReopenedOnce) {
  ScriptedServer server([](const Received&, int n) {
    Reply r = ok();
    r.close_after = n == 0;  // answers as keep-alive, then closes quietly
    return r;
  });
  auto client = makeOtlpHttpTransport(cfgFor(server.url()));
  EXPECT_EQ(client->post({}, "first", in(milliseconds(5000))).status, 200);
  std::this_thread::sleep_for(milliseconds(100));  // the close reaches the client
  auto r = client->post({}, "second", in(milliseconds(5000)));
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(server.connections(), 2);
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u) << "the second request arrives once";
  EXPECT_EQ(reqs[1].body, "second");
  EXPECT_EQ(reqs[1].connection, 2);
}

TEST(OtlpHttpClientTest, DeadlineCutsAStalledExchange) {
  ScriptedServer server([](const Received&, int) { return Reply{}; });  // never answers
  auto client = makeOtlpHttpTransport(cfgFor(server.url()));
  auto start = SteadyClock::now();
  auto r = client->post({}, "x", start + milliseconds(300));
  auto took = SteadyClock::now() - start;
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
  EXPECT_GE(took, milliseconds(290));
  EXPECT_LT(took, milliseconds(2000));
  // The next exchange starts on a fresh connection.
  client->post({}, "y", SteadyClock::now() + milliseconds(100));
  EXPECT_EQ(server.connections(), 2);
  EXPECT_EQ(client->post({}, "z", SteadyClock::now() - milliseconds(1)).status, 0)
      << "a deadline already past sends nothing";
}

TEST(OtlpHttpClientTest, FailuresBecomeErrors) {
  uint16_t closed_port = 0;
  {
    ScriptedServer gone([](const Received&, int) { return ok(); });
    closed_port = gone.port();
  }
  auto refused = makeOtlpHttpTransport(
      cfgFor("http://127.0.0.1:" + std::to_string(closed_port) + "/v1/traces"));
  auto r = refused->post({}, "x", in(milliseconds(2000)));
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("cannot connect to 127.0.0.1:" + std::to_string(closed_port)),
            std::string::npos)
      << r.error;

  ScriptedServer garbage([](const Received&, int n) -> Reply {
    if (n == 0) {
      return {"SMTP ready\r\n\r\n", true};
    }
    return {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true};  // truncated
  });
  auto client = makeOtlpHttpTransport(cfgFor(garbage.url()));
  r = client->post({}, "x", in(milliseconds(2000)));
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("bad response"), std::string::npos) << r.error;
  r = client->post({}, "x", in(milliseconds(2000)));
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.error.find("in the middle of the response"), std::string::npos) << r.error;
}

TEST(OtlpHttpClientTest, UnusableTlsSettingsFailAtStartup) {
  auto cfg = cfgFor("https://collector.example:4318/v1/traces");
  cfg.tls.ca_file = "/nonexistent/ca.pem";
  try {
    makeOtlpHttpTransport(cfg);
    FAIL() << "an unreadable CA file must stop the start";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tracing.exporter.tls.ca_file: cannot load "
                                         "/nonexistent/ca.pem"),
              std::string::npos)
        << e.what();
  }
  cfg.tls.ca_file.clear();
  EXPECT_NE(makeOtlpHttpTransport(cfg), nullptr) << "the system CA store";
}

}  // namespace
}  // namespace sidetrace::proxy
