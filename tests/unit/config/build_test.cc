#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;
using testing::errorOf;

std::string writeTemp(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() /
              ("sidetrace_config_test_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path) << text;
  return path.string();
}

Config zeroConfig() {
  CliOptions cli;
  cli.listen = ":15001";
  cli.upstream = "127.0.0.1:8080";
  return buildConfig(cli, envFrom({}));
}

TEST(ApplyFlags, ZeroConfigSidecar) {
  Config cfg = zeroConfig();
  ASSERT_EQ(cfg.listeners.size(), 1u);
  EXPECT_EQ(cfg.listeners[0].name, "ingress");
  EXPECT_EQ(cfg.listeners[0].address.str(), "0.0.0.0:15001");
  ASSERT_EQ(cfg.listeners[0].routes.size(), 1u);
  const Route& r = cfg.listeners[0].routes[0];
  EXPECT_EQ(r.name, "default");
  EXPECT_EQ(r.cluster, "upstream");
  EXPECT_EQ(r.match.path_kind, RouteMatch::PathKind::Any);
  ASSERT_EQ(cfg.clusters.size(), 1u);
  EXPECT_EQ(cfg.clusters[0].name, "upstream");
  ASSERT_EQ(cfg.clusters[0].endpoints.size(), 1u);
  EXPECT_EQ(cfg.clusters[0].endpoints[0].str(), "127.0.0.1:8080");
  EXPECT_EQ(cfg.tracing.exporter.protocol, "console");
  EXPECT_TRUE(cfg.admin.enabled);
  EXPECT_EQ(cfg.admin.address.str(), "127.0.0.1:9901");
}

TEST(ApplyFlags, EveryFlag) {
  const char* argv[] = {"sidetrace",
                        "--listen",
                        ":1",
                        "--upstream",
                        "h:2",
                        "--service-name",
                        "svc",
                        "--otlp-endpoint",
                        "http://c:4317",
                        "--admin",
                        "[::1]:9000",
                        "--workers",
                        "2",
                        "--ignore-path",
                        "/health",
                        "--log-level",
                        "warn"};
  Config cfg = buildConfig(parseArgs(17, argv), envFrom({}));
  EXPECT_EQ(cfg.tracing.service_name, "svc");
  EXPECT_EQ(cfg.tracing.exporter.protocol, "grpc");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://c:4317");
  EXPECT_EQ(cfg.admin.address.str(), "[::1]:9000");
  EXPECT_EQ(cfg.workers, 2u);
  ASSERT_EQ(cfg.tracing.ignore.size(), 1u);
  EXPECT_EQ(cfg.tracing.ignore[0].kind, IgnoreRule::Kind::Prefix);
  EXPECT_EQ(cfg.tracing.ignore[0].value, "/health");
  EXPECT_EQ(cfg.log_level, "warn");
}

TEST(ApplyFlags, AdminOff) {
  for (const char* off : {"off", "none"}) {
    CliOptions cli;
    cli.listen = ":1";
    cli.upstream = "h:2";
    cli.admin = off;
    EXPECT_FALSE(buildConfig(cli, envFrom({})).admin.enabled) << off;
  }
}

TEST(ApplyFlags, Errors) {
  CliOptions listen_only;
  listen_only.listen = ":1";
  EXPECT_EQ(errorOf([&] { buildConfig(listen_only, envFrom({})); }),
            "--listen: needs --upstream when the config has no listeners");
  CliOptions bad;
  bad.listen = ":1";
  bad.upstream = "nohost";
  EXPECT_EQ(errorOf([&] { buildConfig(bad, envFrom({})); }),
            "--upstream: bad address 'nohost': missing ':port' (expected host:port, [v6]:port or "
            ":port)");
  CliOptions endpoint;
  endpoint.listen = ":1";
  endpoint.upstream = "h:2";
  endpoint.otlp_endpoint = "colector";
  EXPECT_EQ(errorOf([&] { buildConfig(endpoint, envFrom({})); }),
            "--otlp-endpoint: bad endpoint 'colector': expected http://host:port, "
            "https://host:port, host:port or unix:/path/to/socket; or console");
}

// `--otlp-endpoint console` means what it means to `sidetrace inject`: spans on stdout.
TEST(ApplyFlags, OtlpEndpointConsoleAndUnixSocket) {
  CliOptions cli;
  cli.listen = ":1";
  cli.upstream = "h:2";
  cli.otlp_endpoint = "console";
  Config console = buildConfig(cli, envFrom({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"}}));
  EXPECT_EQ(console.tracing.exporter.protocol, "console");
  EXPECT_EQ(console.tracing.exporter.endpoint, "");
  cli.otlp_endpoint = "unix:/run/otel/otlp.sock";
  Config unix_socket = buildConfig(cli, envFrom({}));
  EXPECT_EQ(unix_socket.tracing.exporter.protocol, "grpc");
  EXPECT_EQ(unix_socket.tracing.exporter.endpoint, "unix:/run/otel/otlp.sock");
}

TEST(ApplyFlags, OverrideFileListenerAndCluster) {
  std::string path = writeTemp("override.yaml",
                               "listeners: [ { name: l, address: \"1.1.1.1:1\", routes: [ { "
                               "cluster: c } ] } ]\n"
                               "clusters: [ { name: c, endpoints: [ \"a:1\", \"b:2\" ] } ]\n");
  CliOptions cli;
  cli.config_path = path;
  cli.listen = "2.2.2.2:2";
  cli.upstream = "z:9";
  Config cfg = buildConfig(cli, envFrom({}));
  ASSERT_EQ(cfg.listeners.size(), 1u);
  EXPECT_EQ(cfg.listeners[0].name, "l");
  EXPECT_EQ(cfg.listeners[0].address.str(), "2.2.2.2:2");
  ASSERT_EQ(cfg.clusters[0].endpoints.size(), 1u);
  EXPECT_EQ(cfg.clusters[0].endpoints[0].str(), "z:9");
  std::filesystem::remove(path);
}

TEST(BuildConfig, PrecedenceEnvFileFlags) {
  std::string path = writeTemp("precedence.yaml",
                               "listeners: [ { address: \":1\", routes: [ { cluster: c } ] } ]\n"
                               "clusters: [ { name: c, endpoints: [ \"a:1\" ] } ]\n"
                               "tracing:\n"
                               "  service_name: from-file\n"
                               "  sampler: { type: always_off }\n");
  auto env = envFrom({{"OTEL_SERVICE_NAME", "from-env"},
                      {"OTEL_TRACES_SAMPLER", "traceidratio"},
                      {"OTEL_TRACES_SAMPLER_ARG", "0.3"},
                      {"OTEL_PROPAGATORS", "b3"}});
  CliOptions cli;
  cli.config_path = path;
  Config file_wins = buildConfig(cli, env);
  EXPECT_EQ(file_wins.tracing.service_name, "from-file");   // file > env
  EXPECT_EQ(file_wins.tracing.sampler.type, "always_off");  // file > env
  EXPECT_DOUBLE_EQ(file_wins.tracing.sampler.ratio, 0.3);   // env, the file is silent
  EXPECT_EQ(file_wins.tracing.propagators, (std::vector<std::string>{"b3"}));  // env

  cli.service_name = "from-flag";
  EXPECT_EQ(buildConfig(cli, env).tracing.service_name, "from-flag");  // flags > file
  std::filesystem::remove(path);
}

// --trace-context sets every listener's, the file's and the zero-config one alike; the egress
// listener keeps trusting its app.
TEST(BuildConfig, TraceContextFlag) {
  std::string path =
      writeTemp("trace_context.yaml",
                "listeners:\n"
                "  - { address: \":1\", trace_context: ignore, routes: [ { cluster: c } ] }\n"
                "  - { name: b, address: \":2\", routes: [ { cluster: c } ] }\n"
                "clusters: [ { name: c, endpoints: [ \"a:1\" ] } ]\n"
                "egress: { address: 127.0.0.1:15002 }\n");
  CliOptions cli;
  cli.config_path = path;
  Config from_file = buildConfig(cli, envFrom({}));
  EXPECT_EQ(from_file.listeners[0].trace_context, TraceContextTrust::Ignore);
  EXPECT_EQ(from_file.listeners[1].trace_context, TraceContextTrust::Trust);
  cli.trace_context = TraceContextTrust::Restart;
  Config flagged = buildConfig(cli, envFrom({}));
  ASSERT_EQ(flagged.listeners.size(), 3u);
  EXPECT_EQ(flagged.listeners[0].trace_context, TraceContextTrust::Restart);
  EXPECT_EQ(flagged.listeners[1].trace_context, TraceContextTrust::Restart);
  EXPECT_TRUE(flagged.listeners[2].egress);
  EXPECT_EQ(flagged.listeners[2].trace_context, TraceContextTrust::Trust);
  std::filesystem::remove(path);

  CliOptions zero;
  zero.listen = ":15001";
  zero.upstream = "127.0.0.1:8080";
  zero.trace_context = TraceContextTrust::Restart;
  EXPECT_EQ(buildConfig(zero, envFrom({})).listeners[0].trace_context, TraceContextTrust::Restart);
}

TEST(BuildConfig, UnreadableFile) {
  CliOptions cli;
  cli.config_path = "/nonexistent/sidetrace.yaml";
  EXPECT_EQ(errorOf([&] { buildConfig(cli, envFrom({})); }),
            "--config: cannot read /nonexistent/sidetrace.yaml: No such file or directory");
  cli.config_path = std::filesystem::temp_directory_path().string();
  EXPECT_EQ(errorOf([&] { buildConfig(cli, envFrom({})); }),
            "--config: cannot read " + *cli.config_path + ": is a directory");
}

TEST(BuildConfig, MessagesUseTheFilePath) {
  std::string path = writeTemp("bad.yaml", "\nworkers: x\n");
  CliOptions cli;
  cli.config_path = path;
  EXPECT_EQ(errorOf([&] { buildConfig(cli, envFrom({})); }),
            path + ":2: workers: expected a non-negative integer, got 'x'");
  std::filesystem::remove(path);
}

// ---- validate --------------------------------------------------------------------------------

Config valid() {
  return zeroConfig();
}

TEST(Validate, NoListeners) {
  EXPECT_EQ(errorOf([] { validate(Config{}); }),
            "listeners: none configured (pass --listen ADDR --upstream HOST:PORT, or --config FILE "
            "with a listeners: section)");
  EXPECT_EQ(errorOf([] { buildConfig(CliOptions{}, envFrom({})); }),
            "listeners: none configured (pass --listen ADDR --upstream HOST:PORT, or --config FILE "
            "with a listeners: section)");
}

TEST(Validate, Routes) {
  Config cfg = valid();
  Route r = cfg.listeners[0].routes[0];
  r.cluster = "x";
  cfg.listeners[0].routes.push_back(r);
  cfg.listeners[0].routes.push_back(r);
  EXPECT_EQ(errorOf([&] { validate(cfg); }), "listeners[0].routes[1].cluster: unknown cluster 'x'");

  Config both = valid();
  both.listeners[0].routes[0].direct_response = DirectResponse{};
  EXPECT_EQ(errorOf([&] { validate(both); }),
            "listeners[0].routes[0]: a route needs exactly one of cluster or direct_response");

  Config status = valid();
  status.listeners[0].routes[0].cluster.clear();
  status.listeners[0].routes[0].direct_response = DirectResponse{99, ""};
  EXPECT_EQ(errorOf([&] { validate(status); }),
            "listeners[0].routes[0].direct_response.status: expected an HTTP status 100..599, "
            "got 99");

  Config dup = valid();
  dup.listeners.push_back(dup.listeners[0]);
  EXPECT_EQ(errorOf([&] { validate(dup); }),
            "listeners[1].name: duplicate listener name 'ingress'");

  Config timeout = valid();
  timeout.listeners[0].routes[0].timeout = Duration(0);
  EXPECT_EQ(errorOf([&] { validate(timeout); }),
            "listeners[0].routes[0].timeout: must be greater than 0");
}

TEST(Validate, Clusters) {
  Config dup = valid();
  dup.clusters.push_back(dup.clusters[0]);
  EXPECT_EQ(errorOf([&] { validate(dup); }), "clusters[1].name: duplicate cluster name 'upstream'");
  Config empty = valid();
  empty.clusters[0].endpoints.clear();
  EXPECT_EQ(errorOf([&] { validate(empty); }),
            "clusters[0].endpoints: needs at least one endpoint");
  Config proto = valid();
  proto.clusters[0].protocol = "http3";
  EXPECT_EQ(errorOf([&] { validate(proto); }),
            "clusters[0].protocol: unknown cluster protocol 'http3' (expected one of: http1, "
            "http2)");
  Config h2 = valid();
  h2.clusters[0].protocol = "http2";
  EXPECT_NO_THROW(validate(h2));
  Config tls = valid();
  tls.listeners[0].tls.emplace();
  tls.listeners[0].tls->cert = "s.pem";
  tls.listeners[0].tls->key = "s.key";
  EXPECT_NO_THROW(validate(tls));
  tls.listeners[0].tls->certificates.push_back({"b.pem", ""});
  EXPECT_EQ(errorOf([&] { validate(tls); }),
            "listeners[0].tls.certificates[0]: needs both cert and key");
  Config lb = valid();
  lb.clusters[0].lb = "least_request";
  EXPECT_NO_THROW(validate(lb));
  lb.clusters[0].lb = "ring_hash";
  EXPECT_EQ(errorOf([&] { validate(lb); }),
            "clusters[0].lb: load balancer 'ring_hash' is not implemented yet (expected one of: "
            "round_robin, random, least_request)");
}

TEST(Validate, Tracing) {
  Config ratio = valid();
  ratio.tracing.sampler.ratio = -0.1;
  EXPECT_EQ(errorOf([&] { validate(ratio); }), "tracing.sampler.ratio: must be between 0 and 1");
  Config sampler = valid();
  sampler.tracing.sampler.type = "sometimes";
  EXPECT_EQ(errorOf([&] { validate(sampler); }).rfind("tracing.sampler.type: unknown sampler", 0),
            0u);
  Config prop = valid();
  prop.tracing.propagators = {"tracecontext", "xray"};
  EXPECT_EQ(errorOf([&] { validate(prop); }),
            "tracing.propagators[1]: unknown propagator 'xray' (expected one of: tracecontext, "
            "baggage, b3, b3multi, none)");
  Config http = valid();
  http.tracing.exporter.protocol = "http/protobuf";
  EXPECT_EQ(errorOf([&] { validate(http); }),
            "tracing.exporter.endpoint: required with protocol http/protobuf (e.g. "
            "http://localhost:4318/v1/traces; or set OTEL_EXPORTER_OTLP_ENDPOINT)");
  http.tracing.exporter.endpoint = "collector:4318/v1/traces";
  EXPECT_EQ(errorOf([&] { validate(http); }),
            "tracing.exporter.endpoint: bad URL 'collector:4318/v1/traces': expected "
            "http://host:port/path or https://host:port/path");
  http.tracing.exporter.endpoint = "https://collector:4318/v1/traces";
  EXPECT_EQ(errorOf([&] { validate(http); }), "<no error>");
  Config skip = valid();
  skip.tracing.exporter.protocol = "grpc";
  skip.tracing.exporter.endpoint = "https://c:4317";
  skip.tracing.exporter.tls.insecure_skip_verify = true;
  EXPECT_EQ(errorOf([&] { validate(skip); }),
            "tracing.exporter.tls.insecure_skip_verify: only supported with protocol "
            "http/protobuf or http/json");
  skip.tracing.exporter.protocol = "http/json";
  EXPECT_EQ(errorOf([&] { validate(skip); }), "<no error>");
  Config grpc = valid();
  grpc.tracing.exporter.protocol = "grpc";
  EXPECT_EQ(errorOf([&] { validate(grpc); }),
            "tracing.exporter.endpoint: required with protocol grpc (e.g. http://localhost:4317; "
            "or set OTEL_EXPORTER_OTLP_ENDPOINT or --otlp-endpoint)");
  Config batch = valid();
  batch.tracing.batch.max_export_batch_size = 4096;
  EXPECT_EQ(errorOf([&] { validate(batch); }),
            "tracing.batch.max_export_batch_size: must not exceed max_queue_size (4096 > 2048)");
  Config zero = valid();
  zero.tracing.batch.max_queue_size = 0;
  EXPECT_EQ(errorOf([&] { validate(zero); }),
            "tracing.batch.max_queue_size: must be greater than 0");
  Config delay = valid();
  delay.tracing.batch.schedule_delay = Duration(0);
  EXPECT_EQ(errorOf([&] { validate(delay); }),
            "tracing.batch.schedule_delay: must be greater than 0");
  Config limits = valid();
  limits.limits.idle_timeout = Duration(0);
  EXPECT_EQ(errorOf([&] { validate(limits); }), "limits.idle_timeout: must be greater than 0");
  Config count = valid();
  count.limits.max_request_headers_count = 0;
  EXPECT_EQ(errorOf([&] { validate(count); }),
            "limits.max_request_headers_count: must be greater than 0");
}

TEST(Validate, EnvOtlpHttpDefaultsToLocalCollector) {
  CliOptions cli;
  cli.listen = ":1";
  cli.upstream = "h:2";
  Config cfg = buildConfig(cli, envFrom({{"OTEL_TRACES_EXPORTER", "otlp"},
                                         {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"},
                                         {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"}}));
  EXPECT_EQ(cfg.tracing.exporter.protocol, "http/json");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://localhost:4318/v1/traces");
  EXPECT_EQ(cfg.tracing.exporter.tls.ca_file, "/etc/ca.pem");
  EXPECT_EQ(errorOf([&] {
              buildConfig(cli, envFrom({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c/v1/traces"},
                                        {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}}));
            }),
            "tracing.exporter.endpoint: bad URL 'ftp://c/v1/traces': unsupported scheme 'ftp' "
            "(expected http or https)");
}

// The file's endpoint for OTLP/HTTP: a URL with a path is the traces URL; a base URL gets
// /v1/traces; env-provided endpoints keep the OTLP spec's own rule (env_test.cc).
TEST(Validate, YamlOtlpHttpEndpointRule) {
  auto load = [](const std::string& exporter) {
    CliOptions cli;
    cli.config_path = writeTemp("otlp_http.yaml", R"(listeners:
  - address: ":1"
    routes: [ { direct_response: { status: 200 } } ]
tracing:
  exporter: )" + exporter + "\n");
    return buildConfig(cli, envFrom({})).tracing.exporter;
  };
  EXPECT_EQ(load("{ protocol: http/protobuf, endpoint: \"http://c:4318\" }").endpoint,
            "http://c:4318/v1/traces");
  EXPECT_EQ(load("{ protocol: http/protobuf, endpoint: \"http://c:4318/\" }").endpoint,
            "http://c:4318/v1/traces");
  EXPECT_EQ(load("{ protocol: http/json, endpoint: \"https://c/otlp/v1/traces\" }").endpoint,
            "https://c/otlp/v1/traces");
  EXPECT_EQ(load("{ protocol: http/json }").endpoint, "http://localhost:4318/v1/traces");
  EXPECT_EQ(load("{ protocol: grpc, endpoint: \"http://c:4317\" }").endpoint, "http://c:4317");
}

// ---- examples/*.yaml -------------------------------------------------------------------------

Config loadExample(const std::string& name) {
  CliOptions cli;
  cli.config_path = std::string(SIDETRACE_SOURCE_DIR) + "/examples/" + name;
  return buildConfig(cli, envFrom({}));
}

TEST(Examples, EveryExampleLoads) {
  size_t count = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(SIDETRACE_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() == ".yaml") {
      ++count;
      EXPECT_NO_THROW(loadExample(entry.path().filename().string())) << entry.path();
    }
  }
  EXPECT_GE(count, 3u);
}

TEST(Examples, Sidecar) {
  Config cfg = loadExample("sidecar.yaml");
  EXPECT_EQ(cfg.listeners[0].address.str(), "0.0.0.0:15001");
  EXPECT_EQ(cfg.clusters[0].endpoints[0].str(), "127.0.0.1:8080");  // ${APP_PORT:-8080}
  EXPECT_EQ(cfg.tracing.exporter.protocol, "grpc");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://localhost:4317");
  EXPECT_EQ(cfg.tracing.service_name, "my-app");
  bool probe_ignored = false;
  for (const auto& rule : cfg.tracing.ignore) {
    probe_ignored |= rule.kind == IgnoreRule::Kind::Header && rule.header == "user-agent" &&
                     rule.value == "kube-probe/*";
  }
  EXPECT_TRUE(probe_ignored);
}

TEST(Examples, SidecarWithEnv) {
  CliOptions cli;
  cli.config_path = std::string(SIDETRACE_SOURCE_DIR) + "/examples/sidecar.yaml";
  Config cfg = buildConfig(cli, envFrom({{"APP_PORT", "3000"}, {"SERVICE_NAME", "shop"}}));
  EXPECT_EQ(cfg.clusters[0].endpoints[0].str(), "127.0.0.1:3000");
  EXPECT_EQ(cfg.tracing.service_name, "shop");
}

TEST(Examples, Edge) {
  Config cfg = loadExample("edge.yaml");
  EXPECT_EQ(cfg.clusters.size(), 2u);
  EXPECT_EQ(cfg.tracing.propagators, (std::vector<std::string>{"tracecontext", "b3multi"}));
  EXPECT_EQ(cfg.tracing.sampler.type, "parentbased_traceidratio");
  EXPECT_DOUBLE_EQ(cfg.tracing.sampler.ratio, 0.1);
  ASSERT_GE(cfg.listeners[0].routes.size(), 5u);
  EXPECT_TRUE(cfg.listeners[0].routes[0].direct_response);
  EXPECT_EQ(cfg.listeners[0].routes[0].match.path, "/ping");
  EXPECT_EQ(cfg.listeners[0].trace_context, TraceContextTrust::Restart);
  EXPECT_TRUE(cfg.tracing.server_timing);
  const auto& write = cfg.listeners[0].routes[2];
  ASSERT_EQ(write.name, "orders-write");
  ASSERT_TRUE(write.tracing && write.tracing->sampler);
  EXPECT_EQ(write.tracing->sampler->type, "always_on");
  EXPECT_EQ(write.tracing->request_headers,
            (std::vector<std::string>{"x-request-id", "idempotency-key"}));
}

TEST(Examples, Grpc) {
  Config cfg = loadExample("grpc.yaml");
  ASSERT_EQ(cfg.clusters.size(), 1u);
  EXPECT_EQ(cfg.clusters[0].protocol, "http2");
  EXPECT_EQ(cfg.clusters[0].lb, "least_request");
  EXPECT_EQ(cfg.clusters[0].endpoints[1].weight, 2u);
  EXPECT_EQ(cfg.clusters[0].circuit_breakers.max_requests, 1000u);
  ASSERT_TRUE(cfg.listeners[0].routes[0].retry_policy);
  EXPECT_EQ(cfg.listeners[0].routes[0].retry_policy->retry_on,
            RetryPolicy::kGrpcUnavailable | RetryPolicy::kConnectFailure);
  EXPECT_EQ(cfg.tracing.ignore.size(), 2u);
  EXPECT_EQ(cfg.limits.max_concurrent_streams, 200u);
}

TEST(Examples, Console) {
  Config cfg = loadExample("console.yaml");
  EXPECT_EQ(cfg.tracing.exporter.protocol, "console");
  EXPECT_EQ(cfg.listeners[0].name, "ingress");
  EXPECT_EQ(cfg.listeners[0].routes[0].name, "app");
}

}  // namespace
}  // namespace sidetrace::config
