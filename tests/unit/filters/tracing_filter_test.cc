#include "filters/tracing_filter.h"

#include "config/checks.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tracing/batch_processor.h"
#include "tracing/exporter.h"
#include "tracing/otlp_encode.h"
#include "tracing/sampler.h"
#include "tracing/tracer.h"

namespace sidetrace::filters {
namespace {

constexpr const char* kTp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr const char* kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr const char* kSpan = "00f067aa0ba902b7";

// Decodes each request the way a collector would and keeps the spans.
class RecordingExporter : public tracing::SpanExporter {
 public:
  tracing::ExportResult exportSpans(std::string_view request, size_t span_count) override {
    std::vector<tracing::SpanData> spans;
    const bool ok = tracing::decodeOtlpRequest(request, &spans);
    std::lock_guard lock(mu);
    if (!ok || spans.size() != span_count) {
      ++bad_requests;
      return tracing::ExportResult::Failure;
    }
    for (auto& s : spans) {
      got.push_back(std::move(s));
    }
    return tracing::ExportResult::Success;
  }
  std::mutex mu;
  std::vector<tracing::SpanData> got;
  int bad_requests = 0;
};

// Keys that occur more than once among a span's attributes (OTLP wants unique keys; setAttribute
// appends, so the filter must set each key once).
std::vector<std::string> duplicateKeys(const tracing::SpanData& d) {
  std::vector<std::string> dups;
  std::set<std::string_view> seen;
  for (const auto& a : d.attributes) {
    if (!seen.insert(a.key).second) {
      dups.push_back(a.key);
    }
  }
  return dups;
}

void expectUniqueKeys(const std::vector<tracing::SpanData>& spans) {
  for (const auto& s : spans) {
    EXPECT_EQ(duplicateKeys(s), std::vector<std::string>{})
        << "span " << s.name << " kind " << static_cast<int>(s.kind);
  }
}

const tracing::Attribute* findAttr(const tracing::SpanData& d, std::string_view key) {
  for (const auto& a : d.attributes) {
    if (a.key == key) {
      return &a;
    }
  }
  return nullptr;
}

std::optional<std::string> strAttr(const tracing::SpanData& d, std::string_view key) {
  const auto* a = findAttr(d, key);
  if (a == nullptr || !std::holds_alternative<std::string>(a->value)) {
    return std::nullopt;
  }
  return std::get<std::string>(a->value);
}

std::optional<int64_t> intAttr(const tracing::SpanData& d, std::string_view key) {
  const auto* a = findAttr(d, key);
  if (a == nullptr || !std::holds_alternative<int64_t>(a->value)) {
    return std::nullopt;
  }
  return std::get<int64_t>(a->value);
}

const tracing::SpanData* findKind(const std::vector<tracing::SpanData>& spans,
                                  tracing::SpanKind kind) {
  for (const auto& s : spans) {
    if (s.kind == kind) {
      return &s;
    }
  }
  return nullptr;
}

class TracingFilterTest : public ::testing::Test {
 protected:
  TracingFilterTest() {
    auto e = std::make_unique<RecordingExporter>();
    exporter_ = e.get();
    config::BatchConfig bc;
    bc.schedule_delay = config::Duration{60000};
    processor_ =
        std::make_unique<tracing::BatchSpanProcessor>(std::move(e), bc, tracing::Resource{});
    buffer_ = std::make_unique<tracing::WorkerSpanBuffer>(processor_.get(), 1000);

    route_.name = "orders-api";
    route_.cluster = "orders";
    listener_.name = "ingress";
    listener_.routes.push_back(route_);
  }

  void makeFilter(const std::string& sampler = "parentbased_always_on") {
    cfg_.sampler.type = sampler;
    tracer_ = std::make_unique<tracing::Tracer>(
        tracing::makeSampler(sampler, 1.0), buffer_.get(), [this] { return clock_ += 1000; }, 7);
    listeners_ = {listener_};  // the route samplers are built from these (same routes, indices)
    filter_ = std::make_unique<TracingFilter>(cfg_, *tracer_, nullptr, false, &listeners_);
  }

  std::vector<tracing::SpanData> flushAll() {
    buffer_->flush();
    EXPECT_TRUE(processor_->forceFlush(std::chrono::seconds(5)));
    std::lock_guard lock(exporter_->mu);
    EXPECT_EQ(exporter_->bad_requests, 0);
    return exporter_->got;
  }

  void initStream(Stream& s, std::string method, std::string target,
                  std::vector<Header> headers = {}) {
    s.listener = &listener_;
    s.peer_address = "10.1.2.3";
    s.peer_port = 40000;
    s.local_port = 15001;
    s.request.method = std::move(method);
    s.request.target = std::move(target);
    s.request.headers.add("Host", "shop.example.com:15001");
    for (auto& h : headers) {
      s.request.headers.add(std::move(h.name), std::move(h.value));
    }
  }

  // Runs a full exchange through the filter: request, route, one upstream attempt, completion.
  // Returns the upstream request head the filter saw.
  RequestHead exchange(Stream& s, int status,
                       UpstreamResult::Error err = UpstreamResult::Error::None) {
    EXPECT_EQ(filter_->onRequest(s), FilterStatus::Continue);
    s.route = &listener_.routes[0];
    s.route_index = 0;
    filter_->onRouted(s);
    RequestHead up;
    up.method = s.request.method;
    up.target = s.request.target;
    up.headers = s.request.headers;
    filter_->onUpstreamRequest(s, up);
    s.upstream_attempted = true;
    s.upstream.error = err;
    s.upstream.status = err == UpstreamResult::Error::None ? status : 0;
    s.upstream.endpoint_host = "orders.internal";
    s.upstream.endpoint_address = "10.9.9.9";
    s.upstream.endpoint_port = 8080;
    filter_->onUpstreamResult(s);
    s.response_status = status;
    if (err == UpstreamResult::Error::ConnectFailure) {
      s.error_type = "connect_failure";
    }
    filter_->onComplete(s);
    return up;
  }

  config::TracingConfig cfg_;
  config::Route route_;
  config::Listener listener_;
  std::vector<config::Listener> listeners_;
  RecordingExporter* exporter_ = nullptr;
  std::unique_ptr<tracing::BatchSpanProcessor> processor_;
  std::unique_ptr<tracing::WorkerSpanBuffer> buffer_;
  std::unique_ptr<tracing::Tracer> tracer_;
  std::unique_ptr<TracingFilter> filter_;
  uint64_t clock_ = 0;
};

TEST_F(TracingFilterTest, ExtractedParentBecomesServerParent) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders", {{"traceparent", kTp}});
  exchange(s, 200);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->trace_id.hex(), kTrace);
  EXPECT_EQ(server->parent_span_id.hex(), kSpan);
  EXPECT_NE(server->span_id.hex(), kSpan);
  EXPECT_EQ(server->flags, 1);
}

TEST_F(TracingFilterTest, InjectsClientContextUpstream) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders", {{"traceparent", kTp}});
  RequestHead up = exchange(s, 200);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  // CLIENT is a child of SERVER in the same trace.
  EXPECT_EQ(client->trace_id.hex(), kTrace);
  EXPECT_EQ(client->parent_span_id, server->span_id);
  EXPECT_NE(client->span_id, server->span_id);
  // The injected traceparent carries the CLIENT span id.
  EXPECT_EQ(up.headers.get("traceparent"),
            std::string("00-") + kTrace + "-" + client->span_id.hex() + "-01");
  EXPECT_EQ(up.headers.count("traceparent"), 1u);
  // The downstream request head itself still carries the caller's context.
  EXPECT_EQ(s.request.headers.get("traceparent"), kTp);
}

// Field lines of one name, whatever their case, are one list (RFC 9110 §5.3); the request head
// keeps them as they came, the upstream gets the combined tracestate in one line.
TEST_F(TracingFilterTest, TracestateLinesOfTheRequestHeadAreCombined) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders",
             {{"traceparent", kTp}, {"TraceState", "rojo=1"}, {"tracestate", "congo=2"}});
  RequestHead up = exchange(s, 200);
  EXPECT_EQ(up.headers.get("tracestate"), "rojo=1,congo=2");
  EXPECT_EQ(up.headers.count("tracestate"), 1u);
  std::string scratch;
  EXPECT_EQ(s.request.headers.getList("tracestate", scratch), "rojo=1,congo=2");
  EXPECT_EQ(s.request.headers.count("tracestate"), 2u);
  // One line: the value itself, not a copy.
  EXPECT_EQ(s.request.headers.getList("traceparent", scratch)->data(),
            s.request.headers.get("traceparent")->data());
  EXPECT_FALSE(s.request.headers.getList("baggage", scratch));
  auto spans = flushAll();
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->tracestate, "rojo=1,congo=2");
}

TEST_F(TracingFilterTest, AttributesAndNamesAtCompletion) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders/42?a=1&b", {{"User-Agent", "curl/8.0"}});
  exchange(s, 200);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);

  EXPECT_EQ(server->name, "GET orders-api");
  EXPECT_EQ(client->name, "GET orders-api");
  EXPECT_FALSE(server->parent_span_id.valid());  // no incoming context: root

  EXPECT_EQ(strAttr(*server, "http.request.method"), "GET");
  EXPECT_EQ(strAttr(*server, "url.path"), "/api/orders/42");
  EXPECT_EQ(strAttr(*server, "url.query"), "a=REDACTED&REDACTED");
  EXPECT_EQ(strAttr(*server, "url.scheme"), "http");
  EXPECT_EQ(strAttr(*server, "http.route"), "orders-api");
  EXPECT_EQ(intAttr(*server, "http.response.status_code"), 200);
  EXPECT_EQ(strAttr(*server, "client.address"), "10.1.2.3");
  EXPECT_EQ(strAttr(*server, "network.peer.address"), "10.1.2.3");
  EXPECT_EQ(intAttr(*server, "network.peer.port"), 40000);
  EXPECT_EQ(strAttr(*server, "server.address"), "shop.example.com");
  EXPECT_EQ(intAttr(*server, "server.port"), 15001);
  EXPECT_EQ(strAttr(*server, "network.protocol.version"), "1.1");
  EXPECT_EQ(strAttr(*server, "user_agent.original"), "curl/8.0");
  EXPECT_EQ(findAttr(*server, "error.type"), nullptr);
  EXPECT_EQ(server->status, tracing::StatusCode::Unset);
  // The raw query never reaches any attribute.
  for (const auto* d : {server, client}) {
    for (const auto& a : d->attributes) {
      if (const auto* v = std::get_if<std::string>(&a.value)) {
        EXPECT_EQ(v->find("a=1"), std::string::npos) << a.key << "=" << *v;
      }
    }
  }

  EXPECT_EQ(strAttr(*client, "http.request.method"), "GET");
  EXPECT_EQ(strAttr(*client, "http.route"), "orders-api");
  EXPECT_EQ(intAttr(*client, "http.response.status_code"), 200);
  EXPECT_EQ(strAttr(*client, "server.address"), "orders.internal");
  EXPECT_EQ(intAttr(*client, "server.port"), 8080);
  EXPECT_EQ(strAttr(*client, "network.peer.address"), "10.9.9.9");
  EXPECT_EQ(strAttr(*client, "url.full"),
            "http://orders.internal:8080/api/orders/42?a=REDACTED&REDACTED");
  EXPECT_EQ(strAttr(*client, "sidetrace.cluster"), "orders");
  EXPECT_EQ(client->status, tracing::StatusCode::Unset);
}

TEST_F(TracingFilterTest, NoRouteNameIsJustMethod) {
  makeFilter();
  Stream s;
  initStream(s, "POST", "/nowhere");
  filter_->onRequest(s);
  filter_->onRouted(s);
  s.response_status = 404;
  filter_->onComplete(s);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].name, "POST");
  EXPECT_EQ(findAttr(spans[0], "http.route"), nullptr);
  EXPECT_EQ(findAttr(spans[0], "url.query"), nullptr);
  EXPECT_EQ(intAttr(spans[0], "http.response.status_code"), 404);
  EXPECT_EQ(spans[0].status, tracing::StatusCode::Unset);  // 4xx is not a server error
}

// HTTP semantic conventions: a method outside RFC 9110's and PATCH is "_OTHER", the original kept
// beside it, and the span named "HTTP {route}": a client must not be able to mint span names.
TEST_F(TracingFilterTest, UnknownMethodIsOther) {
  makeFilter();
  Stream s;
  initStream(s, "PROPFIND", "/api/orders");
  exchange(s, 207);
  Stream bare;
  initStream(bare, "MKCOL", "/nowhere");
  filter_->onRequest(bare);
  filter_->onRouted(bare);
  bare.response_status = 404;
  filter_->onComplete(bare);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 3u);
  for (const auto& d : spans) {
    SCOPED_TRACE(d.name);
    EXPECT_EQ(strAttr(d, "http.request.method"), "_OTHER");
    EXPECT_TRUE(strAttr(d, "http.request.method_original") == "PROPFIND" ||
                strAttr(d, "http.request.method_original") == "MKCOL");
  }
  EXPECT_EQ(findKind(spans, tracing::SpanKind::Server)->name, "HTTP orders-api");
  EXPECT_EQ(findKind(spans, tracing::SpanKind::Client)->name, "HTTP orders-api");
  EXPECT_EQ(spans.back().name, "HTTP");  // no route
}

TEST_F(TracingFilterTest, KnownMethodsKeepTheirName) {
  for (const char* m :
       {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    EXPECT_TRUE(knownHttpMethod(m)) << m;
  }
  for (const char* m : {"get", "PURGE", "PROPFIND", "QUERY", ""}) {
    EXPECT_FALSE(knownHttpMethod(m)) << m;
  }
  makeFilter();
  Stream s;
  initStream(s, "PATCH", "/api/orders");
  exchange(s, 200);
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 2u);
  for (const auto& d : spans) {
    EXPECT_EQ(d.name, "PATCH orders-api");
    EXPECT_EQ(strAttr(d, "http.request.method"), "PATCH");
    EXPECT_EQ(findAttr(d, "http.request.method_original"), nullptr);
  }
}

// Only a "/package.Service/Method" path names a gRPC span; content-type application/grpc on any
// other path keeps the HTTP name (one span name per path would be unbounded cardinality).
TEST_F(TracingFilterTest, OnlyRpcShapedPathsNameGrpcSpans) {
  makeFilter();
  Stream rpc;
  initStream(rpc, "POST", "/shop.v1.Orders/Get");
  rpc.grpc = true;
  exchange(rpc, 200);
  Stream other;
  initStream(other, "POST", "/api/orders/12345");
  other.grpc = true;
  exchange(other, 200);
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 4u);
  size_t rpc_named = 0;
  for (const auto& d : spans) {
    if (d.name == "shop.v1.Orders/Get") {
      ++rpc_named;
      EXPECT_EQ(strAttr(d, "rpc.service"), "shop.v1.Orders");
      EXPECT_EQ(strAttr(d, "rpc.method"), "Get");
    } else {
      EXPECT_EQ(d.name, "POST orders-api");
      EXPECT_EQ(strAttr(d, "rpc.system"), "grpc");
      EXPECT_EQ(findAttr(d, "rpc.service"), nullptr);
      EXPECT_EQ(findAttr(d, "rpc.method"), nullptr);
    }
  }
  EXPECT_EQ(rpc_named, 2u);
}

// The filter remembers the last path's verdict: repeated, alternating and long paths (past what
// it remembers) are each judged as grpcMethodPath judges them.
TEST_F(TracingFilterTest, RpcShapeJudgedForEveryPath) {
  makeFilter();
  const std::string long_rpc = "/" + std::string(300, 'p') + ".S/M";
  const std::string long_other = "/" + std::string(300, 'p') + "/S/M";
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"/shop.v1.Orders/Get", "shop.v1.Orders/Get"},
      {"/shop.v1.Orders/Get", "shop.v1.Orders/Get"},
      {"/api/orders/12345", "POST orders-api"},
      {"/api/orders/12345", "POST orders-api"},
      {"/shop.v1.Orders/Get?x=1", "shop.v1.Orders/Get"},
      {"/shop.v1.Orders/List", "shop.v1.Orders/List"},
      {long_rpc, long_rpc.substr(1)},
      {long_other, "POST orders-api"},
      {"/shop.v1.Orders/Get", "shop.v1.Orders/Get"}};
  size_t seen = 0;
  for (const auto& [path, name] : calls) {
    Stream s;
    initStream(s, "POST", path);
    s.grpc = true;
    exchange(s, 200);
    auto spans = flushAll();  // every span so far
    ASSERT_EQ(spans.size(), seen + 2) << path;
    for (const auto& d :
         std::vector(spans.begin() + static_cast<std::ptrdiff_t>(seen), spans.end())) {
      EXPECT_EQ(d.name, name) << path;
      const size_t slash = name.find('/');
      const bool rpc = slash != std::string::npos;
      EXPECT_EQ(strAttr(d, "rpc.system"), "grpc") << path;
      EXPECT_EQ(strAttr(d, "rpc.service"),
                rpc ? std::optional(name.substr(0, slash)) : std::nullopt)
          << path;
      EXPECT_EQ(strAttr(d, "rpc.method"),
                rpc ? std::optional(name.substr(slash + 1)) : std::nullopt)
          << path;
      EXPECT_EQ(intAttr(d, "rpc.grpc.status_code"), std::nullopt) << path;  // none seen
    }
    seen = spans.size();
  }
}

// The attributes a connection, an endpoint or a route shares are encoded once and reused: each
// request still gets its own, whichever connection, endpoint, route and protocol it came by (in
// any order, with connections whose cache slots collide: ports 40000 and 40233).
TEST_F(TracingFilterTest, SharedAttributesFollowEachRequest) {
  config::Route users = route_;
  users.name = "users-api";
  users.tracing.emplace();
  users.tracing->attributes = {{"team", "users"}, {"tier", "1"}};
  listener_.routes.push_back(users);
  makeFilter();
  struct Case {
    std::string peer;
    uint16_t peer_port, local_port;
    std::string host, address;
    uint16_t port;
    size_t route;
    bool http2;
    int minor;
    std::string method = "GET";
    bool tls = false;  // to the upstream
  };
  const std::vector<Case> cases = {
      {"10.1.2.3", 40000, 15001, "orders.internal", "10.9.9.9", 8080, 0, false, 1},
      {"10.1.2.3", 40233, 15001, "orders.internal", "10.9.9.8", 8080, 1, true, 1},
      {"10.1.2.3", 40000, 15001, "orders.internal", "10.9.9.9", 8080, 0, false, 0},
      {"10.1.2.3", 40000, 15001, "orders.internal", "10.9.9.9", 8080, 0, false, 0, "POST"},
      {"10.1.2.3", 40000, 15001, "orders.internal", "10.9.9.9", 8080, 0, false, 0, "PURGE"},
      {"10.1.2.4", 40000, 15001, "users.internal", "10.9.9.9", 8081, 1, false, 1},
      {"10.1.2.4", 40000, 15002, "users.internal", "", 8081, 1, true, 1, "PURGE"},
      {"10.1.2.4", 40000, 15002, "users.internal", "", 8081, 1, true, 1, "DELETE"},
      {"::1", 40233, 15001, "orders.internal", "10.9.9.9", 8080, 0, true, 1},
      {"10.1.2.3", 40000, 15001, "orders.internal", "10.9.9.9", 8080, 0, false, 1, "GET", true},
      {"10.1.2.3", 40000, 15001, "orders.internal", "10.9.9.9", 8080, 0, false, 1}};
  size_t seen = 0;
  for (const Case& c : cases) {
    Stream s;
    initStream(s, c.method, "/api/orders");
    s.peer_address = c.peer;
    s.peer_port = c.peer_port;
    s.local_port = c.local_port;
    s.http2 = c.http2;
    s.request.version_minor = c.minor;
    ASSERT_EQ(filter_->onRequest(s), FilterStatus::Continue);
    s.route = &listener_.routes[c.route];
    s.route_index = c.route;
    filter_->onRouted(s);
    RequestHead up = s.request;
    filter_->onUpstreamRequest(s, up);
    s.upstream_attempted = true;
    s.upstream.status = 200;
    s.upstream.endpoint_host = c.host;
    s.upstream.endpoint_address = c.address;
    s.upstream.endpoint_port = c.port;
    s.upstream.http2 = !c.http2;
    s.upstream.tls = c.tls;
    filter_->onUpstreamResult(s);
    s.response_status = 200;
    filter_->onComplete(s);
    auto spans = flushAll();
    ASSERT_EQ(spans.size(), seen + 2);
    seen = spans.size();
    const tracing::SpanData* server = nullptr;
    const tracing::SpanData* client = nullptr;
    for (const auto& d : spans) {  // the newest of each kind
      (d.kind == tracing::SpanKind::Server ? server : client) = &d;
    }
    ASSERT_TRUE(server != nullptr && client != nullptr);
    const std::string name = listener_.routes[c.route].name;
    EXPECT_EQ(strAttr(*server, "client.address"), c.peer) << name;
    EXPECT_EQ(strAttr(*server, "network.peer.address"), c.peer);
    EXPECT_EQ(intAttr(*server, "network.peer.port"), c.peer_port);
    EXPECT_EQ(intAttr(*server, "server.port"), c.local_port);
    EXPECT_EQ(strAttr(*server, "network.protocol.version"), c.http2        ? "2"
                                                            : c.minor == 0 ? "1.0"
                                                                           : "1.1");
    EXPECT_EQ(strAttr(*client, "network.protocol.version"),
              c.http2 ? (c.minor == 0 ? "1.0" : "1.1") : "2");
    EXPECT_EQ(strAttr(*client, "server.address"), c.host);
    EXPECT_EQ(strAttr(*client, "url.full"), std::string(c.tls ? "https://" : "http://") + c.host +
                                                ":" + std::to_string(c.port) + "/api/orders");
    EXPECT_EQ(intAttr(*client, "server.port"), c.port);
    if (c.address.empty()) {
      EXPECT_EQ(findAttr(*client, "network.peer.address"), nullptr);
      EXPECT_EQ(findAttr(*client, "network.peer.port"), nullptr);
    } else {
      EXPECT_EQ(strAttr(*client, "network.peer.address"), c.address);
      EXPECT_EQ(intAttr(*client, "network.peer.port"), c.port);
    }
    const bool known = c.method != "PURGE";
    for (const auto* d : {server, client}) {
      EXPECT_EQ(strAttr(*d, "http.request.method"), known ? c.method : "_OTHER");
      EXPECT_EQ(strAttr(*d, "http.request.method_original"),
                known ? std::nullopt : std::optional(c.method));
      EXPECT_EQ(d->name, (known ? c.method : "HTTP") + " " + name);
      EXPECT_EQ(strAttr(*d, "http.route"), name);
      EXPECT_EQ(strAttr(*d, "team"),
                c.route == 1 ? std::optional<std::string>("users") : std::nullopt);
      EXPECT_EQ(strAttr(*d, "tier"), c.route == 1 ? std::optional<std::string>("1") : std::nullopt);
    }
    expectUniqueKeys(spans);
  }
}

TEST_F(TracingFilterTest, ServerErrorMarksServerSpan) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders");
  exchange(s, 503);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(server->status, tracing::StatusCode::Error);
  EXPECT_EQ(strAttr(*server, "error.type"), "503");
  EXPECT_EQ(intAttr(*server, "http.response.status_code"), 503);
  EXPECT_EQ(client->status, tracing::StatusCode::Error);
  EXPECT_EQ(strAttr(*client, "error.type"), "503");
}

TEST_F(TracingFilterTest, ClientErrorOnlyMarksClientSpan) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders");
  exchange(s, 404);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(server->status, tracing::StatusCode::Unset);
  EXPECT_EQ(findAttr(*server, "error.type"), nullptr);
  EXPECT_EQ(client->status, tracing::StatusCode::Error);
  EXPECT_EQ(strAttr(*client, "error.type"), "404");
}

TEST_F(TracingFilterTest, ConnectFailureMarksClientSpan) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders");
  exchange(s, 503, UpstreamResult::Error::ConnectFailure);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->status, tracing::StatusCode::Error);
  EXPECT_EQ(client->status_message, "connect_failure");
  EXPECT_EQ(strAttr(*client, "error.type"), "connect_failure");
  EXPECT_EQ(findAttr(*client, "http.response.status_code"), nullptr);
  EXPECT_EQ(server->status, tracing::StatusCode::Error);
  EXPECT_EQ(strAttr(*server, "error.type"), "connect_failure");
}

TEST_F(TracingFilterTest, NoResponseMarksServerSpan) {
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders");
  filter_->onRequest(s);
  s.route = &listener_.routes[0];
  filter_->onRouted(s);
  RequestHead up = s.request;
  filter_->onUpstreamRequest(s, up);
  // Client went away: no upstream result, nothing sent downstream.
  s.response_status = 0;
  filter_->onComplete(s);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(strAttr(*server, "error.type"), "no_response");
  EXPECT_EQ(server->status, tracing::StatusCode::Error);
  EXPECT_EQ(findAttr(*server, "http.response.status_code"), nullptr);
  EXPECT_EQ(strAttr(*client, "error.type"), "reset");
  EXPECT_EQ(client->status, tracing::StatusCode::Error);
}

// ---- ignore rules ----

config::IgnoreRule ignorePath(config::IgnoreRule::Kind kind, std::string value) {
  config::IgnoreRule r;
  r.kind = kind;
  if (kind == config::IgnoreRule::Kind::Regex) {
    r.regex = config::detail::compileRegex(value);
  } else {
    r.value = std::move(value);
  }
  return r;
}

config::IgnoreRule ignoreHeader(std::string header, std::string glob) {
  config::IgnoreRule r;
  r.kind = config::IgnoreRule::Kind::Header;
  r.header = std::move(header);
  r.value = std::move(glob);
  return r;
}

class TracingFilterIgnoreTest : public TracingFilterTest {
 protected:
  TracingFilterIgnoreTest() {
    cfg_.ignore.push_back(ignorePath(config::IgnoreRule::Kind::Path, "/health"));
    cfg_.ignore.push_back(ignorePath(config::IgnoreRule::Kind::Prefix, "/ready"));
    cfg_.ignore.push_back(ignorePath(config::IgnoreRule::Kind::Regex, "^/metrics"));
    cfg_.ignore.push_back(ignoreHeader("user-agent", "kube-probe/*"));
    makeFilter();
  }

  // Asserts that the request is proxied untouched and produces no span.
  void expectIgnored(const std::string& target, std::vector<Header> extra = {}) {
    SCOPED_TRACE(target);
    Stream s;
    extra.push_back({"traceparent", kTp});
    extra.push_back({"tracestate", "rojo=00f067aa0ba902b7"});
    initStream(s, "GET", target, extra);
    std::vector<Header> before(s.request.headers.begin(), s.request.headers.end());
    RequestHead up = exchange(s, 200);
    EXPECT_FALSE(s.traced);
    EXPECT_FALSE(s.server_span.context().valid());
    EXPECT_FALSE(s.client_span.context().valid());
    std::vector<Header> after(up.headers.begin(), up.headers.end());
    ASSERT_EQ(after.size(), before.size());
    for (size_t i = 0; i < before.size(); ++i) {
      EXPECT_EQ(after[i].name, before[i].name);
      EXPECT_EQ(after[i].value, before[i].value);
    }
    EXPECT_EQ(up.headers.get("traceparent"), kTp);
  }
};

TEST_F(TracingFilterIgnoreTest, ExactPath) {
  expectIgnored("/health");
  expectIgnored("/health?verbose=1");
  EXPECT_TRUE(flushAll().empty());
}

TEST_F(TracingFilterIgnoreTest, Prefix) {
  expectIgnored("/ready");
  expectIgnored("/readyz/deep");
  EXPECT_TRUE(flushAll().empty());
}

TEST_F(TracingFilterIgnoreTest, Regex) {
  expectIgnored("/metrics");
  expectIgnored("/metrics/prom");
  EXPECT_TRUE(flushAll().empty());
}

TEST_F(TracingFilterIgnoreTest, HeaderGlob) {
  expectIgnored("/api/orders", {{"User-Agent", "kube-probe/1.29"}});
  expectIgnored("/api/orders", {{"User-Agent", "kube-probe/"}});
  EXPECT_TRUE(flushAll().empty());
}

TEST_F(TracingFilterIgnoreTest, NonMatchingRequestsAreTraced) {
  const char* targets[] = {"/healthz", "/api/health", "/api/metrics", "/read"};
  for (const char* t : targets) {
    Stream s;
    initStream(s, "GET", t, {{"User-Agent", "kube-probe"}});  // no slash: glob does not match
    exchange(s, 200);
    EXPECT_TRUE(s.traced) << t;
  }
  Stream s;
  initStream(s, "GET", "/x", {{"User-Agent", "Mozilla kube-probe/1"}});
  exchange(s, 200);
  EXPECT_TRUE(s.traced);
  auto spans = flushAll();
  EXPECT_EQ(spans.size(), 10u);
  expectUniqueKeys(spans);
}

TEST_F(TracingFilterTest, TracingDisabledTouchesNothing) {
  cfg_.enabled = false;
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders", {{"traceparent", kTp}});
  RequestHead up = exchange(s, 200);
  EXPECT_FALSE(s.traced);
  EXPECT_EQ(up.headers.get("traceparent"), kTp);
  EXPECT_TRUE(flushAll().empty());
}

// ---- sampling and malformed context ----

TEST_F(TracingFilterTest, UnsampledExportsNothingButPropagatesFlags00) {
  makeFilter("always_off");
  Stream s;
  initStream(s, "GET", "/api/orders", {{"traceparent", kTp}});
  RequestHead up = exchange(s, 200);
  EXPECT_TRUE(s.traced);
  auto tp = up.headers.get("traceparent");
  ASSERT_TRUE(tp.has_value());
  ASSERT_EQ(tp->size(), 55u);
  EXPECT_EQ(tp->substr(0, 36), std::string("00-") + kTrace + "-");
  EXPECT_NE(tp->substr(36, 16), kSpan);
  EXPECT_EQ(tp->substr(52), "-00");
  EXPECT_TRUE(flushAll().empty());
  EXPECT_EQ(processor_->stats().spans_sampled.load(), 0u);
}

TEST_F(TracingFilterTest, UnsampledRootStillPropagates) {
  makeFilter("always_off");
  Stream s;
  initStream(s, "GET", "/api/orders");
  RequestHead up = exchange(s, 200);
  auto tp = up.headers.get("traceparent");
  ASSERT_TRUE(tp.has_value());
  ASSERT_EQ(tp->size(), 55u);
  EXPECT_EQ(tp->substr(52), "-00");
  EXPECT_NE(tp->substr(3, 32), std::string(32, '0'));
  EXPECT_TRUE(flushAll().empty());
}

TEST_F(TracingFilterTest, MalformedTraceparentStartsNewTrace) {
  makeFilter();
  const char* bad[] = {
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",     // missing flags
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper-case hex
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
      "garbage",
  };
  for (const char* tp : bad) {
    SCOPED_TRACE(tp);
    exporter_->got.clear();
    Stream s;
    initStream(s, "GET", "/api/orders", {{"traceparent", tp}});
    RequestHead up = exchange(s, 200);
    EXPECT_TRUE(s.traced);
    EXPECT_EQ(s.response_status, 200);
    auto spans = flushAll();
    expectUniqueKeys(spans);
    ASSERT_EQ(spans.size(), 2u);
    const auto* server = findKind(spans, tracing::SpanKind::Server);
    const auto* client = findKind(spans, tracing::SpanKind::Client);
    ASSERT_NE(server, nullptr);
    ASSERT_NE(client, nullptr);
    EXPECT_TRUE(server->trace_id.valid());
    EXPECT_NE(server->trace_id.hex(), kTrace);
    EXPECT_FALSE(server->parent_span_id.valid());
    EXPECT_EQ(server->flags, 1);
    EXPECT_EQ(up.headers.get("traceparent"),
              "00-" + server->trace_id.hex() + "-" + client->span_id.hex() + "-01");
  }
}

TEST_F(TracingFilterTest, SequentialRequestsGetDistinctTraces) {
  makeFilter();
  Stream a;
  initStream(a, "GET", "/a");
  exchange(a, 200);
  Stream b;
  initStream(b, "GET", "/b");
  exchange(b, 200);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 4u);
  EXPECT_EQ(spans[0].trace_id, spans[1].trace_id);
  EXPECT_EQ(spans[2].trace_id, spans[3].trace_id);
  EXPECT_NE(spans[0].trace_id, spans[2].trace_id);
}

// ---- helpers ----

TEST(DuplicateKeysTest, FindsRepeatedKeys) {
  tracing::SpanData d;
  d.attributes = {{"a", std::string("1")}, {"b", int64_t{2}}};
  EXPECT_TRUE(duplicateKeys(d).empty());
  d.attributes.push_back({"a", std::string("again")});
  d.attributes.push_back({"a", true});
  EXPECT_EQ(duplicateKeys(d), (std::vector<std::string>{"a", "a"}));
}

TEST(GlobMatchTest, Literals) {
  EXPECT_TRUE(globMatch("", ""));
  EXPECT_TRUE(globMatch("abc", "abc"));
  EXPECT_FALSE(globMatch("abc", "abd"));
  EXPECT_FALSE(globMatch("abc", "ab"));
  EXPECT_FALSE(globMatch("ab", "abc"));
  EXPECT_FALSE(globMatch("", "a"));
  EXPECT_FALSE(globMatch("a", ""));
  EXPECT_FALSE(globMatch("ABC", "abc"));  // case-sensitive
}

TEST(GlobMatchTest, Stars) {
  EXPECT_TRUE(globMatch("*", ""));
  EXPECT_TRUE(globMatch("*", "anything"));
  EXPECT_TRUE(globMatch("**", "x"));
  EXPECT_TRUE(globMatch("kube-probe/*", "kube-probe/1.29"));
  EXPECT_TRUE(globMatch("kube-probe/*", "kube-probe/"));
  EXPECT_FALSE(globMatch("kube-probe/*", "kube-probe"));
  EXPECT_FALSE(globMatch("kube-probe/*", "xkube-probe/1"));
  EXPECT_TRUE(globMatch("*probe*", "kube-probe/1"));
  EXPECT_TRUE(globMatch("*-probe", "kube-probe"));
  EXPECT_FALSE(globMatch("*-probe", "kube-probe/1"));
  EXPECT_TRUE(globMatch("a*b*c", "abc"));
  EXPECT_TRUE(globMatch("a*b*c", "aXbYc"));
  EXPECT_TRUE(globMatch("a*b*c", "abcbc"));
  EXPECT_TRUE(globMatch("a*c", "abcbcbc"));  // needs backtracking
  EXPECT_FALSE(globMatch("a*b*c", "acb"));
  EXPECT_FALSE(globMatch("a*c", "abcb"));
  EXPECT_TRUE(globMatch("*aab", "aaaab"));
  EXPECT_FALSE(globMatch("?", "a"));  // only '*' is special
  EXPECT_TRUE(globMatch("?", "?"));
}

// trace_context: restart — a new trace sampled as a root (the caller's flags 00 do not stop it),
// the SERVER span linked to what the caller sent, and nothing of the caller's context upstream.
TEST_F(TracingFilterTest, RestartListenerStartsANewTraceLinkedToTheCallers) {
  listener_.trace_context = config::TraceContextTrust::Restart;
  cfg_.propagators = {"tracecontext", "baggage", "b3multi"};
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders",
             {{"traceparent", std::string("00-") + kTrace + "-" + kSpan + "-00"},
              {"tracestate", "vendor=1"},
              {"baggage", "user=alice"},
              {"X-B3-TraceId", kTrace},
              {"X-B3-SpanId", kSpan},
              {"b3", "0"}});
  RequestHead up = exchange(s, 200);
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  EXPECT_NE(server->trace_id.hex(), kTrace);
  EXPECT_FALSE(server->parent_span_id.valid());
  EXPECT_EQ(server->tracestate, "");
  ASSERT_EQ(server->links.size(), 1u);
  EXPECT_EQ(server->links[0].trace_id.hex(), kTrace);
  EXPECT_EQ(server->links[0].span_id.hex(), kSpan);
  EXPECT_EQ(up.headers.get("traceparent"),
            "00-" + server->trace_id.hex() + "-" + client->span_id.hex() + "-01");
  EXPECT_EQ(up.headers.get("x-b3-traceid"), server->trace_id.hex());
  EXPECT_FALSE(up.headers.get("tracestate"));
  EXPECT_FALSE(up.headers.get("baggage"));
  EXPECT_FALSE(up.headers.get("b3"));
  EXPECT_EQ(up.headers.count("x-b3-spanid"), 1u);
}

// trace_context: ignore — the caller's context is not even a link; an ignored path on such a
// listener still loses the caller's headers.
TEST_F(TracingFilterTest, IgnoreListenerDisregardsTheCallersContext) {
  listener_.trace_context = config::TraceContextTrust::Ignore;
  config::IgnoreRule health;
  health.kind = config::IgnoreRule::Kind::Path;
  health.value = "/health";
  cfg_.ignore.push_back(health);
  makeFilter("parentbased_always_off");  // a root is not sampled, whatever the caller says
  Stream s;
  initStream(s, "GET", "/api/orders", {{"traceparent", kTp}});
  RequestHead up = exchange(s, 200);
  auto tp = tracing::parseTraceparent(up.headers.get("traceparent").value_or(""));
  ASSERT_TRUE(tp);
  EXPECT_NE(tp->trace_id.hex(), kTrace);
  EXPECT_EQ(tp->flags & tracing::kFlagSampled, 0);

  Stream ignored;
  initStream(ignored, "GET", "/health", {{"traceparent", kTp}, {"baggage", "a=1"}});
  RequestHead up2 = exchange(ignored, 200);
  EXPECT_FALSE(up2.headers.get("traceparent"));
  EXPECT_FALSE(up2.headers.get("baggage"));
  EXPECT_TRUE(flushAll().empty());
}

// A route with tracing off is proxied like an ignored path; another route samples with its own
// sampler (and still propagates, flags 00); static attributes go on both spans.
TEST_F(TracingFilterTest, RouteTracingOffOwnSamplerAndAttributes) {
  config::RouteTracing off;
  off.enabled = false;
  listener_.routes[0].tracing = off;
  config::Route quiet = route_;
  quiet.name = "quiet";
  quiet.tracing = config::RouteTracing{};
  quiet.tracing->sampler = config::SamplerConfig{"always_off", 1.0};
  listener_.routes.push_back(quiet);
  config::Route tagged = route_;
  tagged.name = "tagged";
  tagged.tracing = config::RouteTracing{};
  tagged.tracing->attributes = {{"team", "checkout"}, {"tier", "1"}};
  listener_.routes.push_back(tagged);
  makeFilter("always_on");

  auto run = [&](Stream& s, size_t route) {
    filter_->onRequest(s);
    s.route = &listener_.routes[route];
    s.route_index = route;
    filter_->onRouted(s);
    RequestHead up = s.request;
    filter_->onUpstreamRequest(s, up);
    s.upstream.status = 200;
    filter_->onUpstreamResult(s);
    s.response_status = 200;
    filter_->onComplete(s);
    return up;
  };
  Stream off_stream;
  initStream(off_stream, "GET", "/api/orders", {{"traceparent", kTp}});
  EXPECT_EQ(run(off_stream, 0).headers.get("traceparent"), kTp);  // passed on untouched
  Stream quiet_stream;
  initStream(quiet_stream, "GET", "/api/orders", {{"traceparent", kTp}});
  auto tp = tracing::parseTraceparent(run(quiet_stream, 1).headers.get("traceparent").value_or(""));
  ASSERT_TRUE(tp);
  EXPECT_EQ(tp->trace_id.hex(), kTrace);
  EXPECT_EQ(tp->flags & tracing::kFlagSampled, 0);
  Stream tagged_stream;
  initStream(tagged_stream, "GET", "/api/orders");
  run(tagged_stream, 2);

  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);  // only the tagged route's
  for (const auto& d : spans) {
    EXPECT_EQ(strAttr(d, "http.route"), "tagged");
    EXPECT_EQ(strAttr(d, "team"), "checkout");
    EXPECT_EQ(strAttr(d, "tier"), "1");
  }
}

// Listed headers become string arrays, every field line's value in order; the SERVER span reads
// the request as it came, the CLIENT span the request it sent (with the injected context) and
// the response it got.
TEST_F(TracingFilterTest, ListedHeadersBecomeStringArrays) {
  cfg_.request_headers = {"x-tenant", "traceparent", "x-absent"};
  cfg_.response_headers = {"x-cache"};
  makeFilter();
  Stream s;
  initStream(s, "GET", "/api/orders", {{"X-Tenant", "a"}, {"x-other", "no"}, {"x-tenant", "b, c"}});
  filter_->onRequest(s);
  s.route = &listener_.routes[0];
  filter_->onRouted(s);
  RequestHead up = s.request;
  filter_->onUpstreamRequest(s, up);
  ResponseHead head;
  head.status = 200;
  head.headers.add("X-Cache", "HIT");
  filter_->onResponse(s, head);
  s.upstream.status = 200;
  filter_->onUpstreamResult(s);
  s.response_status = 200;
  filter_->onComplete(s);
  auto spans = flushAll();
  expectUniqueKeys(spans);
  ASSERT_EQ(spans.size(), 2u);
  const auto* server = findKind(spans, tracing::SpanKind::Server);
  const auto* client = findKind(spans, tracing::SpanKind::Client);
  ASSERT_NE(server, nullptr);
  ASSERT_NE(client, nullptr);
  using Strings = std::vector<std::string>;
  for (const auto* d : {server, client}) {
    const auto* tenant = findAttr(*d, "http.request.header.x-tenant");
    ASSERT_NE(tenant, nullptr);
    EXPECT_EQ(std::get<Strings>(tenant->value), (Strings{"a", "b, c"}));
    const auto* cache = findAttr(*d, "http.response.header.x-cache");
    ASSERT_NE(cache, nullptr);
    EXPECT_EQ(std::get<Strings>(cache->value), (Strings{"HIT"}));
    EXPECT_EQ(findAttr(*d, "http.request.header.x-absent"), nullptr);
    EXPECT_EQ(findAttr(*d, "http.request.header.x-other"), nullptr);
  }
  EXPECT_EQ(findAttr(*server, "http.request.header.traceparent"), nullptr);  // none came
  const auto* sent = findAttr(*client, "http.request.header.traceparent");
  ASSERT_NE(sent, nullptr);
  EXPECT_EQ(std::get<Strings>(sent->value),
            (Strings{"00-" + client->trace_id.hex() + "-" + client->span_id.hex() + "-01"}));
}

TEST(ServerTimingTest, AddedOrAppendedToTheLastField) {
  tracing::SpanContext ctx = *tracing::parseTraceparent(kTp);
  const std::string entry = std::string("traceparent;desc=\"") + kTp + "\"";
  HeaderMap none;
  appendServerTiming(ctx, none);
  EXPECT_EQ(none.get("server-timing").value_or(""), entry);

  HeaderMap upstream;
  upstream.add("Server-Timing", "db;dur=53");
  upstream.add("content-type", "text/plain");
  upstream.add("server-timing", "cache;desc=hit");
  appendServerTiming(ctx, upstream);
  EXPECT_EQ(upstream.count("server-timing"), 2u);
  EXPECT_EQ(upstream.get("server-timing").value_or(""), "db;dur=53");  // the first stays as it was
  std::string scratch;
  EXPECT_EQ(upstream.getList("server-timing", scratch).value_or(""),
            "db;dur=53,cache;desc=hit, " + entry);

  HeaderMap empty;
  empty.add("server-timing", " ");
  appendServerTiming(ctx, empty);
  EXPECT_EQ(empty.get("server-timing").value_or(""), " " + entry);

  ctx.flags = 0;  // unsampled: the flags say so
  HeaderMap unsampled;
  appendServerTiming(ctx, unsampled);
  EXPECT_EQ(unsampled.get("server-timing").value_or(""),
            std::string("traceparent;desc=\"00-") + kTrace + "-" + kSpan + "-00\"");
}

TEST(RedactQueryTest, Cases) {
  EXPECT_EQ(redactQuery(""), "");
  EXPECT_EQ(redactQuery("a=1&b"), "a=REDACTED&REDACTED");
  EXPECT_EQ(redactQuery("a=1"), "a=REDACTED");
  EXPECT_EQ(redactQuery("a="), "a=REDACTED");
  EXPECT_EQ(redactQuery("flag"), "REDACTED");  // "/reset?3f9a7c…": a bare item may be a secret
  EXPECT_EQ(redactQuery("a=1&b=2&c=3"), "a=REDACTED&b=REDACTED&c=REDACTED");
  EXPECT_EQ(redactQuery("a=b=c"), "a=REDACTED");
  EXPECT_EQ(redactQuery("=secret"), "=REDACTED");
  EXPECT_EQ(redactQuery("a=1&&b=2"), "a=REDACTED&&b=REDACTED");
  EXPECT_EQ(redactQuery("a=1&"), "a=REDACTED&");
  EXPECT_EQ(redactQuery("&a=1"), "&a=REDACTED");
  EXPECT_EQ(redactQuery("token=abc%26def&x"), "token=REDACTED&REDACTED");
  EXPECT_EQ(redactQuery("&&"), "&&");
}

TEST(RedactQueryTest, UrlQuery) {
  EXPECT_EQ(redactUrlQuery("https://a.example/p?x=1&secret"),
            "https://a.example/p?x=REDACTED&REDACTED");
  EXPECT_EQ(redactUrlQuery("https://a.example/p"), "https://a.example/p");
  EXPECT_EQ(redactUrlQuery("/p?"), "/p?");
  EXPECT_EQ(redactUrlQuery(""), "");
}

}  // namespace
}  // namespace sidetrace::filters

namespace sidetrace::filters {
namespace {

std::vector<std::pair<std::string, std::string>> fields(const HeaderMap& h) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : h) {
    out.emplace_back(f.name, f.value);
  }
  return out;
}

// injectContext skips the lookups for a head without trace-context fields: every propagator set
// (each alone, each twice, b3 with b3multi, which clear each other's fields) must leave the head
// exactly as CompositePropagator::inject does, with or without such fields already there.
TEST(InjectContextTest, SameFieldsAsInject) {
  const std::vector<std::vector<std::string>> sets = {{"tracecontext", "baggage"},
                                                      {"tracecontext"},
                                                      {"b3"},
                                                      {"b3multi"},
                                                      {"b3", "b3multi"},
                                                      {"b3multi", "b3"},
                                                      {"tracecontext", "b3"},
                                                      {"b3", "tracecontext"},
                                                      {"tracecontext", "tracecontext"},
                                                      {"b3multi", "b3multi"},
                                                      {"none"},
                                                      {}};
  std::vector<tracing::SpanContext> contexts(3);
  for (auto& c : contexts) {
    c.trace_id = tracing::TraceId::fromHex(kTrace);
    c.span_id = tracing::SpanId::fromHex(kSpan);
    c.flags = tracing::kFlagSampled;
  }
  contexts[1].tracestate = "rojo=1";
  contexts[2].debug = true;
  const std::vector<std::vector<Header>> heads = {
      {{"Host", "a"}, {"user-agent", "t"}},
      {},
      {{"Host", "a"}, {"baggage", "k=v"}},
      {{"Host", "a"}, {"TraceParent", kTp}, {"tracestate", "x=1"}, {"X-B3-Sampled", "1"}},
      {{"b3", "1"}, {"x-b3-flags", "1"}, {"accept", "*/*"}}};
  for (const auto& names : sets) {
    tracing::CompositePropagator propagator(names);
    for (const auto& ctx : contexts) {
      for (const auto& head : heads) {
        HeaderMap expected, got;
        for (const auto& f : head) {
          expected.add(f.name, f.value);
          got.add(f.name, f.value);
        }
        propagator.inject(ctx, expected);
        injectContext(propagator, ctx, got);
        EXPECT_EQ(fields(got), fields(expected))
            << "propagators " << ::testing::PrintToString(names) << ", head of " << head.size();
      }
    }
  }
}

}  // namespace
}  // namespace sidetrace::filters

namespace sidetrace::filters {
namespace {

// The trace-context fields, in any case, and only they: near misses stay.
TEST(RemoveTraceContextTest, EveryContextFieldAndNothingElse) {
  HeaderMap h;
  for (const char* name : {"traceparent", "TraceParent", "tracestate", "TRACESTATE", "b3", "B3",
                           "baggage", "Baggage", "x-b3-traceid", "X-B3-SpanId", "x-b3-parentspanid",
                           "X-b3-Sampled", "x-b3-flags", "x-b3-anything"}) {
    h.add(name, "1");
  }
  const std::vector<std::string> kept = {
      "traceparents", "tracestat", "trace", "t", "b",    "b4",     "baggages",   "bagage", "x-b3-",
      "x-b3",         "xb3-flags", "x",     "",  "host", "Accept", "user-agent", "4b3"};
  for (const auto& name : kept) {
    h.add(name, "2");
  }
  removeTraceContext(h);
  std::vector<std::string> left;
  for (const auto& f : h) {
    left.push_back(f.name);
  }
  EXPECT_EQ(left, kept);
}

}  // namespace
}  // namespace sidetrace::filters
