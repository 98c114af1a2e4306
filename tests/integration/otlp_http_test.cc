// OTLP/HTTP export end to end: sidetrace proxies a request and exports its spans with
// http/protobuf or http/json to a Beast-based collector (otlp_http_receiver.h), over HTTP or
// HTTPS; the collector decodes with protobuf's generated classes and its JSON parser, and can
// answer 503, 429 + Retry-After, 400 or a partial success.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/integration/otlp_http_receiver.h"
#include "tests/integration/test_pki.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string kParent = "00f067aa0ba902b7";

class OtlpHttpTest : public IntegrationTest {
 protected:
  // The standard config with its gRPC exporter replaced by `exporter` (a YAML flow map).
  std::string configWith(const std::string& exporter) {
    std::string yaml = standardConfigYaml({});
    const std::string from =
        R"(exporter: { protocol: grpc, endpoint: "http://127.0.0.1:{{OTLP_PORT}}", timeout: 2s })";
    size_t at = yaml.find(from);
    EXPECT_NE(at, std::string::npos) << "the standard config changed its exporter line";
    yaml.replace(at, from.size(), "exporter: " + exporter);
    return yaml;
  }

  static std::string url(const OtlpHttpReceiver& r, const std::string& host = "127.0.0.1",
                         const std::string& scheme = "http") {
    return scheme + "://" + host + ":" + std::to_string(r.port());
  }

  // One traced request with a known parent; returns the traceparent the upstream received.
  Traceparent sendTraced(const std::string& path = "/api/orders") {
    const size_t before = upstream_.requestCount();
    auto r =
        httpRequest(port(), "GET", path, {{"traceparent", "00-" + kTrace + "-" + kParent + "-01"}});
    EXPECT_TRUE(r && r->status == 200);
    auto reqs = upstream_.waitForRequests(before + 1, milliseconds(5000));
    EXPECT_FALSE(reqs.empty());
    auto tp =
        Traceparent::parse(reqs.empty() ? "" : reqs.back().header("traceparent").value_or(""));
    EXPECT_TRUE(tp) << (reqs.empty() ? "no upstream request"
                                     : describeHeaders(reqs.back().headers));
    return tp.value_or(Traceparent{});
  }

  // The SERVER and CLIENT span of one proxied request, parented as ARCHITECTURE §6 says.
  void expectServerAndClient(const std::vector<FlatSpan>& spans, const Traceparent& upstream_tp) {
    ASSERT_EQ(spans.size(), 2u) << describeAll(spans);
    auto servers = spansOfKind(spans, 2);
    auto clients = spansOfKind(spans, 3);
    ASSERT_EQ(servers.size(), 1u) << describeAll(spans);
    ASSERT_EQ(clients.size(), 1u) << describeAll(spans);
    const FlatSpan& s = servers[0];
    const FlatSpan& c = clients[0];
    EXPECT_EQ(s.trace_id, kTrace);
    EXPECT_EQ(s.parent_span_id, kParent);
    EXPECT_EQ(c.trace_id, kTrace);
    EXPECT_EQ(c.parent_span_id, s.span_id) << "CLIENT is the child of SERVER";
    EXPECT_EQ(c.span_id, upstream_tp.parent_id) << "the upstream's parent is the CLIENT span";
    EXPECT_EQ(s.name, "GET app");
    EXPECT_EQ(s.str("http.request.method"), "GET");
    EXPECT_EQ(s.integer("http.response.status_code"), std::optional<int64_t>(200));
    EXPECT_EQ(c.integer("server.port"), std::optional<int64_t>(upstream_.port()));
    EXPECT_EQ(s.resourceStr("service.name"), "it-svc");
    EXPECT_EQ(s.scope_name, "sidetrace");
    EXPECT_GT(s.start_ns, 1'600'000'000'000'000'000u) << "64-bit times survive the encoding";
    EXPECT_LE(s.start_ns, s.end_ns);
  }

  static std::string describe(const std::vector<HttpExport>& exports) {
    std::string out = std::to_string(exports.size()) + " request(s):\n";
    for (const auto& e : exports) {
      out += "  " + e.method + " " + e.target + " -> " + std::to_string(e.answered) + ", " +
             std::to_string(e.spans) + " span(s)" +
             (e.decode_error.empty() ? "" : ", decode error: " + e.decode_error) + "\n";
    }
    return out;
  }
};

// http/protobuf; the endpoint is a base URL, so the spans go to /v1/traces (the OTLP rule).
TEST_F(OtlpHttpTest, ProtobufExportWithAuthHeader) {
  OtlpHttpReceiver recv;
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/protobuf, endpoint: \"" + url(recv) +
                 "\", headers: { authorization: \"Bearer it-token\" }, timeout: 2s }")));
  Traceparent tp = sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  std::this_thread::sleep_for(milliseconds(300));
  ASSERT_NO_FATAL_FAILURE(expectServerAndClient(recv.spans(), tp));

  auto exports = recv.exports();
  ASSERT_FALSE(exports.empty());
  for (const auto& e : exports) {
    SCOPED_TRACE(describe(exports));
    EXPECT_EQ(e.method, "POST");
    EXPECT_EQ(e.target, "/v1/traces");
    EXPECT_EQ(e.header("authorization").value_or("<missing>"), "Bearer it-token");
    EXPECT_EQ(e.header("content-type").value_or("<missing>"), "application/x-protobuf");
    EXPECT_FALSE(e.header("content-encoding"));
    EXPECT_EQ(e.header("user-agent").value_or("").rfind("sidetrace/", 0), 0u);
    EXPECT_EQ(e.header("host").value_or(""), "127.0.0.1:" + std::to_string(recv.port()));
    EXPECT_EQ(e.decode_error, "");
    EXPECT_EQ(e.answered, 200);
  }
  EXPECT_GE(waitMetric("sidetrace_spans_exported_total", "", 2), 2);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_export_requests_total", "outcome=\"failed\""), 0);
  EXPECT_TRUE(otlp_.spans().empty());
  stopProxyExpectClean();
}

// http/json, checked by an independent parser: protobuf's JSON reader, after the OTLP/JSON rules
// (hex ids, camelCase, 64-bit strings, integer enums) were checked on the raw document.
TEST_F(OtlpHttpTest, JsonExportReadsBackWithProtobufJsonParser) {
  OtlpHttpReceiver recv;
  // A URL with a path is the traces endpoint as it is.
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(configWith(
      "{ protocol: http/json, endpoint: \"" + url(recv) + "/custom/traces\", timeout: 2s }")));
  Traceparent tp = sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  std::this_thread::sleep_for(milliseconds(300));
  auto exports = recv.exports();
  SCOPED_TRACE(describe(exports));
  ASSERT_NO_FATAL_FAILURE(expectServerAndClient(recv.spans(), tp));
  bool saw_client_id = false;
  for (const auto& e : exports) {
    EXPECT_EQ(e.target, "/custom/traces");
    EXPECT_EQ(e.header("content-type").value_or("<missing>"), "application/json");
    EXPECT_EQ(e.decode_error, "") << e.body;
    EXPECT_NE(e.body.find("\"traceId\":\"" + kTrace + "\""), std::string::npos) << e.body;
    saw_client_id |= e.body.find("\"spanId\":\"" + tp.parent_id + "\"") != std::string::npos;
    EXPECT_NE(e.body.find("\"intValue\":\"200\""), std::string::npos) << e.body;
  }
  EXPECT_TRUE(saw_client_id) << "the upstream's parent id, in hex, in the JSON body";
  stopProxyExpectClean();
}

TEST_F(OtlpHttpTest, GzipBodiesDecode) {
  OtlpHttpReceiver recv;
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(configWith(
      "{ protocol: http/json, endpoint: \"" + url(recv) + "\", compression: gzip, timeout: 2s }")));
  Traceparent tp = sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  std::this_thread::sleep_for(milliseconds(300));
  auto exports = recv.exports();
  SCOPED_TRACE(describe(exports));
  ASSERT_NO_FATAL_FAILURE(expectServerAndClient(recv.spans(), tp));
  for (const auto& e : exports) {
    EXPECT_EQ(e.header("content-encoding").value_or("<missing>"), "gzip");
    ASSERT_GE(e.raw_body.size(), 2u);
    EXPECT_EQ(e.raw_body.substr(0, 2), "\x1f\x8b") << "a gzip member on the wire";
    EXPECT_EQ(e.decode_error, "");
    EXPECT_EQ(e.body.rfind("{\"resourceSpans\":", 0), 0u) << "JSON after gunzip";
  }
  stopProxyExpectClean();
}

// https with the collector's CA configured: verified by name (localhost), with SNI.
TEST_F(OtlpHttpTest, HttpsWithConfiguredCa) {
  TestPki pki = makeTestPki(proc_.dir(), "collector", "it-ca", {"localhost"}, {"127.0.0.1"});
  OtlpHttpReceiver recv(OtlpHttpReceiver::TlsFiles{pki.cert_file, pki.key_file});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/protobuf, endpoint: \"" + url(recv, "localhost", "https") +
                 "/v1/traces\", timeout: 3s, tls: { ca_file: \"" + pki.ca_file + "\" } }")));
  Traceparent tp = sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  std::this_thread::sleep_for(milliseconds(300));
  auto exports = recv.exports();
  SCOPED_TRACE(describe(exports));
  ASSERT_NO_FATAL_FAILURE(expectServerAndClient(recv.spans(), tp));
  for (const auto& e : exports) {
    EXPECT_EQ(e.sni, "localhost") << "SNI names the collector";
    EXPECT_EQ(e.header("host").value_or(""), "localhost:" + std::to_string(recv.port()));
  }
  EXPECT_EQ(recv.failedHandshakes(), 0u);
  stopProxyExpectClean();
}

// A certificate from a CA the proxy does not trust: no span leaves, the failure is counted.
TEST_F(OtlpHttpTest, HttpsUntrustedCertificateIsRefused) {
  TestPki trusted = makeTestPki(proc_.dir(), "trusted", "it-ca", {"localhost"}, {"127.0.0.1"});
  TestPki rogue = makeTestPki(proc_.dir(), "rogue", "rogue-ca", {"localhost"}, {"127.0.0.1"});
  OtlpHttpReceiver recv(OtlpHttpReceiver::TlsFiles{rogue.cert_file, rogue.key_file});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/protobuf, endpoint: \"" + url(recv, "localhost", "https") +
                 "\", timeout: 500ms, tls: { ca_file: \"" + trusted.ca_file + "\" } }")));
  sendTraced();
  EXPECT_GE(waitMetric("sidetrace_export_requests_total", "outcome=\"failed\"", 1), 1);
  EXPECT_GE(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 2), 2);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_spans_exported_total", ""), 0);
  EXPECT_TRUE(recv.exports().empty()) << describe(recv.exports());
  EXPECT_GE(recv.failedHandshakes(), 1u);
  stopProxyExpectClean();
  EXPECT_NE(proc_.stderrText().find("certificate verify failed"), std::string::npos)
      << proc_.logs();
}

// A certificate from the trusted CA, but for another name: host name verification refuses it.
TEST_F(OtlpHttpTest, HttpsCertificateForAnotherHostIsRefused) {
  TestPki pki = makeTestPki(proc_.dir(), "other", "it-ca", {"collector.example"}, {});
  OtlpHttpReceiver recv(OtlpHttpReceiver::TlsFiles{pki.cert_file, pki.key_file});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/protobuf, endpoint: \"" + url(recv, "127.0.0.1", "https") +
                 "\", timeout: 500ms, tls: { ca_file: \"" + pki.ca_file + "\" } }")));
  sendTraced();
  EXPECT_GE(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 2), 2);
  EXPECT_TRUE(recv.exports().empty()) << describe(recv.exports());
  stopProxyExpectClean();
}

TEST_F(OtlpHttpTest, RetriedAfter503) {
  OtlpHttpReceiver recv;
  recv.script({{503, {{"Content-Type", "text/plain"}}, "busy"}});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/protobuf, endpoint: \"" + url(recv) + "\", timeout: 5s }")));
  Traceparent tp = sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  std::this_thread::sleep_for(milliseconds(300));
  auto exports = recv.exports();
  SCOPED_TRACE(describe(exports));
  ASSERT_NO_FATAL_FAILURE(expectServerAndClient(recv.spans(), tp));
  ASSERT_GE(exports.size(), 2u);
  EXPECT_EQ(exports[0].answered, 503);
  EXPECT_EQ(exports[1].answered, 200);
  EXPECT_EQ(exports[1].raw_body, exports[0].raw_body) << "the same batch sent again";
  EXPECT_GE(exports[1].at - exports[0].at, milliseconds(70)) << "after a back-off";
  EXPECT_GE(waitMetric("sidetrace_export_requests_total", "outcome=\"ok\"", 1), 1);
  EXPECT_EQ(metricSum(metrics(), "sidetrace_export_requests_total", "outcome=\"failed\""), 0);
  stopProxyExpectClean();
}

TEST_F(OtlpHttpTest, RetryAfterIsHonouredOn429) {
  OtlpHttpReceiver recv;
  recv.script({{429, {{"Retry-After", "1"}}, ""}});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/json, endpoint: \"" + url(recv) + "\", timeout: 5s }")));
  Traceparent tp = sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  std::this_thread::sleep_for(milliseconds(300));
  auto exports = recv.exports();
  SCOPED_TRACE(describe(exports));
  ASSERT_NO_FATAL_FAILURE(expectServerAndClient(recv.spans(), tp));
  ASSERT_GE(exports.size(), 2u);
  EXPECT_EQ(exports[0].answered, 429);
  EXPECT_GE(exports[1].at - exports[0].at, milliseconds(950))
      << "Retry-After: 1 waits a second, not the 100 ms back-off";
  EXPECT_LT(exports[1].at - exports[0].at, milliseconds(4500));
  stopProxyExpectClean();
}

// 400: the collector will never take this batch; one request per export, counted as failed.
TEST_F(OtlpHttpTest, BadRequestIsNotRetried) {
  OtlpHttpReceiver recv;
  recv.answerAll(HttpAnswer{400, {{"Content-Type", "text/plain"}}, "malformed"});
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/protobuf, endpoint: \"" + url(recv) + "\", timeout: 5s }")));
  sendTraced();
  EXPECT_GE(waitMetric("sidetrace_spans_dropped_total", "reason=\"export_failed\"", 2), 2);
  std::this_thread::sleep_for(milliseconds(500));  // a retry would have come by now
  const double failed =
      metricSum(metrics(), "sidetrace_export_requests_total", "outcome=\"failed\"");
  EXPECT_GE(failed, 1);
  auto exports = recv.exports();
  EXPECT_EQ(static_cast<double>(exports.size()), failed)
      << "exactly one HTTP request per failed export\n"
      << describe(exports);
  EXPECT_TRUE(recv.spans().empty());
  stopProxyExpectClean();
  EXPECT_NE(proc_.stderrText().find("HTTP 400: malformed"), std::string::npos) << proc_.logs();
}

TEST_F(OtlpHttpTest, PartialSuccessIsCountedProtobuf) {
  OtlpHttpReceiver recv;
  recv.rejectInEachResponse(1);
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/protobuf, endpoint: \"" + url(recv) + "\", timeout: 2s }")));
  sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  const double calls = static_cast<double>(recv.waitForExports(1, milliseconds(100)).size());
  EXPECT_GE(waitMetric("sidetrace_spans_rejected_total", "", calls), calls)
      << "one rejected span per successful export";
  stopProxyExpectClean();
  EXPECT_NE(proc_.stderrText().find("rejected"), std::string::npos) << proc_.logs();
}

TEST_F(OtlpHttpTest, PartialSuccessIsCountedJson) {
  OtlpHttpReceiver recv;
  recv.rejectInEachResponse(2);
  ASSERT_NO_FATAL_FAILURE(startProxyYaml(
      configWith("{ protocol: http/json, endpoint: \"" + url(recv) + "\", timeout: 2s }")));
  sendTraced();
  recv.waitForSpans(2, milliseconds(10000));
  const double calls = static_cast<double>(recv.waitForExports(1, milliseconds(100)).size());
  EXPECT_GE(waitMetric("sidetrace_spans_rejected_total", "", 2 * calls), 2 * calls);
  stopProxyExpectClean();
}

// OTEL_* variables alone select OTLP/HTTP: the general endpoint gets /v1/traces, headers apply.
TEST_F(OtlpHttpTest, ConfiguredFromEnvironment) {
  OtlpHttpReceiver recv;
  ASSERT_TRUE(proc_.start(
      {"--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:" + std::to_string(upstream_.port()),
       "--admin", "127.0.0.1:0", "--workers", "1"},
      {{"OTEL_EXPORTER_OTLP_ENDPOINT", url(recv)},
       {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"},
       {"OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k%201"},
       {"OTEL_BSP_SCHEDULE_DELAY", "100"}}));
  ASSERT_TRUE(proc_.waitReady()) << proc_.logs();
  auto r = httpRequest(proc_.listenPort(), "GET", "/from-env");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  auto spans = recv.waitForSpans(2, milliseconds(10000));
  EXPECT_EQ(spans.size(), 2u) << describeAll(spans);
  auto exports = recv.exports();
  ASSERT_FALSE(exports.empty());
  EXPECT_EQ(exports[0].target, "/v1/traces");
  EXPECT_EQ(exports[0].header("x-api-key").value_or("<missing>"), "k 1");
}

}  // namespace
}  // namespace sidetrace::it
