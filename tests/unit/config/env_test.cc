#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;
using testing::errorOf;
using KeyValues = std::vector<std::pair<std::string, std::string>>;

Config withEnv(std::map<std::string, std::string> vars) {
  Config cfg;
  applyEnv(cfg, envFrom(std::move(vars)));
  return cfg;
}

TEST(ApplyEnv, NothingSetKeepsDefaults) {
  Config cfg = withEnv({});
  EXPECT_EQ(cfg.tracing.service_name, "sidetrace");
  EXPECT_EQ(cfg.tracing.exporter.protocol, "console");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "");
  EXPECT_EQ(cfg.tracing.propagators, (std::vector<std::string>{"tracecontext", "baggage"}));
  EXPECT_EQ(cfg.tracing.sampler.type, "parentbased_always_on");
}

TEST(ApplyEnv, ServiceNameAndResource) {
  Config cfg = withEnv({{"OTEL_RESOURCE_ATTRIBUTES",
                         "deployment.environment=prod, team=a%20b%2Cc,service.name=from-attrs"}});
  EXPECT_EQ(cfg.tracing.service_name, "from-attrs");
  EXPECT_EQ(cfg.tracing.resource,
            (KeyValues{{"deployment.environment", "prod"}, {"team", "a b,c"}}));

  Config both = withEnv(
      {{"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"}, {"OTEL_SERVICE_NAME", "from-var"}});
  EXPECT_EQ(both.tracing.service_name, "from-var");
  EXPECT_TRUE(both.tracing.resource.empty());
}

TEST(ApplyEnv, EmptyValuesAreUnset) {
  Config cfg = withEnv({{"OTEL_SERVICE_NAME", ""},
                        {"OTEL_TRACES_SAMPLER", ""},
                        {"OTEL_TRACES_EXPORTER", ""},
                        {"OTEL_EXPORTER_OTLP_ENDPOINT", ""},
                        {"OTEL_BSP_MAX_QUEUE_SIZE", ""}});
  EXPECT_EQ(cfg.tracing.service_name, "sidetrace");
  EXPECT_EQ(cfg.tracing.sampler.type, "parentbased_always_on");
  EXPECT_EQ(cfg.tracing.exporter.protocol, "console");
  EXPECT_EQ(cfg.tracing.batch.max_queue_size, 2048u);
}

TEST(ApplyEnv, Sampler) {
  Config cfg = withEnv(
      {{"OTEL_TRACES_SAMPLER", "parentbased_traceidratio"}, {"OTEL_TRACES_SAMPLER_ARG", "0.25"}});
  EXPECT_EQ(cfg.tracing.sampler.type, "parentbased_traceidratio");
  EXPECT_DOUBLE_EQ(cfg.tracing.sampler.ratio, 0.25);
  EXPECT_EQ(withEnv({{"OTEL_TRACES_SAMPLER", "always_off"}}).tracing.sampler.type, "always_off");

  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_TRACES_SAMPLER_ARG", "1.5"}});
            }),
            "OTEL_TRACES_SAMPLER_ARG='1.5': expected a sampling ratio between 0 and 1");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_TRACES_SAMPLER_ARG", "half"}});
            }),
            "OTEL_TRACES_SAMPLER_ARG='half': expected a sampling ratio between 0 and 1");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_TRACES_SAMPLER", "jaeger_remote"}});
            }),
            "OTEL_TRACES_SAMPLER='jaeger_remote': unknown sampler 'jaeger_remote' (expected one "
            "of: always_on, always_off, traceidratio, parentbased_always_on, "
            "parentbased_always_off, parentbased_traceidratio)");
}

TEST(ApplyEnv, Propagators) {
  EXPECT_EQ(withEnv({{"OTEL_PROPAGATORS", " b3 , b3multi,tracecontext,b3"}}).tracing.propagators,
            (std::vector<std::string>{"b3", "b3multi", "tracecontext"}));
  EXPECT_TRUE(withEnv({{"OTEL_PROPAGATORS", "none"}}).tracing.propagators.empty());
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_PROPAGATORS", "tracecontext,xray"}});
            }),
            "OTEL_PROPAGATORS='tracecontext,xray': unknown propagator 'xray' (expected one of: "
            "tracecontext, baggage, b3, b3multi, none)");
}

TEST(ApplyEnv, ExporterOtlpDefaultsToGrpcLocalhost) {
  Config cfg = withEnv({{"OTEL_TRACES_EXPORTER", "otlp"}});
  EXPECT_EQ(cfg.tracing.exporter.protocol, "grpc");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://localhost:4317");
}

TEST(ApplyEnv, EndpointAloneSelectsOtlp) {
  Config cfg = withEnv({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"}});
  EXPECT_EQ(cfg.tracing.exporter.protocol, "grpc");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://collector:4317");
}

TEST(ApplyEnv, TracesEndpointWins) {
  Config cfg = withEnv({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"},
                        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"}});
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://traces:4317");
}

TEST(ApplyEnv, HttpProtocolAppendsSignalPathToGeneralEndpoint) {
  Config cfg = withEnv({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"},
                        {"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}});
  EXPECT_EQ(cfg.tracing.exporter.protocol, "http/protobuf");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://c:4318/v1/traces");
  Config specific = withEnv({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"},
                             {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"},
                             {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}});
  EXPECT_EQ(specific.tracing.exporter.protocol, "http/json");
  EXPECT_EQ(specific.tracing.exporter.endpoint, "http://c:4318/custom");
}

TEST(ApplyEnv, CertificateIsTheExporterCaFile) {
  EXPECT_EQ(withEnv({}).tracing.exporter.tls.ca_file, "");
  EXPECT_EQ(
      withEnv({{"OTEL_EXPORTER_OTLP_CERTIFICATE", " /etc/ca.pem "}}).tracing.exporter.tls.ca_file,
      "/etc/ca.pem");
  Config specific = withEnv({{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/general.pem"},
                             {"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/etc/traces.pem"}});
  EXPECT_EQ(specific.tracing.exporter.tls.ca_file, "/etc/traces.pem");
  EXPECT_FALSE(specific.tracing.exporter.tls.insecure_skip_verify);
}

TEST(ApplyEnv, ExporterConsoleAndNone) {
  EXPECT_EQ(withEnv({{"OTEL_TRACES_EXPORTER", "none"}}).tracing.exporter.protocol, "none");
  Config cfg = withEnv(
      {{"OTEL_TRACES_EXPORTER", "console"}, {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"}});
  EXPECT_EQ(cfg.tracing.exporter.protocol, "console");
  EXPECT_EQ(cfg.tracing.exporter.endpoint, "http://c:4317");  // kept for a file that picks grpc
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_TRACES_EXPORTER", "zipkin"}});
            }),
            "OTEL_TRACES_EXPORTER='zipkin': expected otlp, console or none");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_TRACES_EXPORTER", "otlp,console"}});
            }),
            "OTEL_TRACES_EXPORTER='otlp,console': only one exporter at a time is supported");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"}});
            }),
            "OTEL_EXPORTER_OTLP_PROTOCOL='thrift': expected grpc, http/protobuf or http/json");
}

TEST(ApplyEnv, HeadersTimeoutCompression) {
  Config cfg = withEnv({{"OTEL_EXPORTER_OTLP_HEADERS", "Api-Key=s%3Dcret, x-tenant = t1"},
                        {"OTEL_EXPORTER_OTLP_TIMEOUT", "2500"},
                        {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"}});
  EXPECT_EQ(cfg.tracing.exporter.headers, (KeyValues{{"api-key", "s=cret"}, {"x-tenant", "t1"}}));
  EXPECT_EQ(cfg.tracing.exporter.timeout, Duration(2500));
  EXPECT_EQ(cfg.tracing.exporter.compression, "gzip");

  Config specific = withEnv({{"OTEL_EXPORTER_OTLP_HEADERS", "a=1"},
                             {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"},
                             {"OTEL_EXPORTER_OTLP_TIMEOUT", "2500"},
                             {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"},
                             {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"},
                             {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"}});
  EXPECT_EQ(specific.tracing.exporter.headers, (KeyValues{{"b", "2"}}));
  EXPECT_EQ(specific.tracing.exporter.timeout, Duration(700));
  EXPECT_EQ(specific.tracing.exporter.compression, "");

  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"}});
            }),
            "OTEL_EXPORTER_OTLP_TIMEOUT='10s': expected a positive integer number of milliseconds");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd"}});
            }),
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION='zstd': expected gzip or none");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_EXPORTER_OTLP_HEADERS", "novalue"}});
            }),
            "OTEL_EXPORTER_OTLP_HEADERS='novalue': expected key=value pairs separated by commas, "
            "got 'novalue'");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_RESOURCE_ATTRIBUTES", "a=1,b"}});
            }),
            "OTEL_RESOURCE_ATTRIBUTES='a=1,b': expected key=value pairs separated by commas, "
            "got 'b'");
}

TEST(ApplyEnv, BatchProcessor) {
  Config cfg = withEnv({{"OTEL_BSP_MAX_QUEUE_SIZE", "4096"},
                        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "256"},
                        {"OTEL_BSP_SCHEDULE_DELAY", "1000"},
                        {"OTEL_BSP_EXPORT_TIMEOUT", "20000"}});
  EXPECT_EQ(cfg.tracing.batch.max_queue_size, 4096u);
  EXPECT_EQ(cfg.tracing.batch.max_export_batch_size, 256u);
  EXPECT_EQ(cfg.tracing.batch.schedule_delay, Duration(1000));
  EXPECT_EQ(cfg.tracing.batch.export_timeout, Duration(20000));
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_BSP_MAX_QUEUE_SIZE", "0"}});
            }),
            "OTEL_BSP_MAX_QUEUE_SIZE='0': expected a positive integer");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_BSP_SCHEDULE_DELAY", "soon"}});
            }),
            "OTEL_BSP_SCHEDULE_DELAY='soon': expected a positive integer number of milliseconds");
}

// OpenTelemetry's span limits: the span-specific variable wins over the general attribute one.
TEST(ApplyEnv, SpanLimits) {
  Config defaults = withEnv({});
  EXPECT_EQ(defaults.tracing.span_limits.attribute_value_length, 4096u);
  EXPECT_EQ(defaults.tracing.span_limits.attribute_count, 128u);
  Config general = withEnv(
      {{"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1000"}, {"OTEL_ATTRIBUTE_COUNT_LIMIT", "40"}});
  EXPECT_EQ(general.tracing.span_limits.attribute_value_length, 1000u);
  EXPECT_EQ(general.tracing.span_limits.attribute_count, 40u);
  Config both = withEnv({{"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1000"},
                         {"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "200"},
                         {"OTEL_ATTRIBUTE_COUNT_LIMIT", "40"},
                         {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "0"}});
  EXPECT_EQ(both.tracing.span_limits.attribute_value_length, 200u);
  EXPECT_EQ(both.tracing.span_limits.attribute_count, 0u);
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0"}});
            }),
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT='0': expected a positive integer");
  EXPECT_EQ(errorOf([] {
              withEnv({{"OTEL_ATTRIBUTE_COUNT_LIMIT", "-1"}});
            }),
            "OTEL_ATTRIBUTE_COUNT_LIMIT='-1': expected a non-negative integer");
}

}  // namespace
}  // namespace sidetrace::config
