#include "config/dump.h"

#include <gtest/gtest.h>

#include <string>

#include "config/load.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::envFrom;

Config fromYaml(const std::string& yaml) {
  Config cfg;
  applyYaml(cfg, yaml, "test.yaml", envFrom({{"TOKEN", "s3cret-token"}}));
  return cfg;
}

const char* kYaml = R"(
admin: { address: 127.0.0.1:9901 }
workers: 2
listeners:
  - name: ingress
    address: 0.0.0.0:15001
    tls:
      cert: /etc/st/server.pem
      key: /etc/st/server.key
      certificates: [ { cert: /etc/st/other.pem, key: /etc/st/other.key } ]
      client_ca: /etc/st/clients.pem
    routes:
      - name: orders
        match: { prefix: /api, method: POST, headers: [ { name: x-canary, exact: "1" } ] }
        cluster: orders
        timeout: 1500ms
      - match: { path: /ping }
        direct_response: { status: 200, body: "pong\n" }
clusters:
  - name: orders
    endpoints: [ "127.0.0.1:8080" ]
tracing:
  service_name: orders
  resource: { deployment.environment: prod }
  propagators: [ tracecontext, b3 ]
  sampler: { type: traceidratio, ratio: 0.25 }
  ignore: [ { path: /health }, { regex: "^/metrics" } ]
  exporter:
    protocol: grpc
    endpoint: http://collector:4317
    headers: { x-api-token: "${TOKEN}" }
    timeout: 2s
    compression: gzip
    tls: { ca_file: /etc/st/ca.pem }
  batch: { max_queue_size: 100, schedule_delay: 2m, max_export_bytes: 2097152 }
  span_limits: { attribute_value_length: 1024 }
access_log: { path: stdout, format: json, max_queue_bytes: 1048576 }
)";

// kYaml with a password in the exporter's URL. The config refuses user info in an endpoint, so
// it is set in code: the dump must not show it even if it got through.
Config withPasswordInEndpoint() {
  Config cfg = fromYaml(kYaml);
  cfg.tracing.exporter.endpoint = "http://user:pa55@collector:4317";
  return cfg;
}

TEST(ConfigDump, WholeConfigAsIndentedJson) {
  const std::string expected = R"({
  "admin": {
    "enabled": true,
    "address": "127.0.0.1:9901",
    "tracez": {
      "max_bytes": 4194304
    }
  },
  "workers": 2,
  "log_level": "info",
  "log_format": "json",
  "listeners": [
    {
      "name": "ingress",
      "address": "0.0.0.0:15001",
      "trace_context": "trust",
      "tls": {
        "cert": "/etc/st/server.pem",
        "key": "[redacted]",
        "certificates": [
          {
            "cert": "/etc/st/other.pem",
            "key": "[redacted]"
          }
        ],
        "client_ca": "/etc/st/clients.pem",
        "require_client_cert": true
      },
      "routes": [
        {
          "name": "orders",
          "match": {
            "prefix": "/api",
            "method": "POST",
            "headers": [
              {
                "name": "x-canary",
                "exact": "1"
              }
            ]
          },
          "cluster": "orders",
          "timeout": "1500ms"
        },
        {
          "name": "direct",
          "match": {
            "path": "/ping"
          },
          "direct_response": {
            "status": 200,
            "body": "pong\n"
          }
        }
      ]
    }
  ],
  "clusters": [
    {
      "name": "orders",
      "endpoints": [
        "127.0.0.1:8080"
      ],
      "protocol": "http1",
      "lb": "round_robin",
      "connect_timeout": "1s",
      "max_idle_connections": 1024,
      "idle_timeout": "1m",
      "max_connection_duration": "0ms",
      "dns_refresh_rate": "5s",
      "retry_budget": {
        "budget_percent": 20,
        "min_retry_concurrency": 3
      },
      "outlier_detection": {
        "consecutive_5xx": 0,
        "consecutive_connect_failures": 1,
        "base_ejection_time": "10s",
        "max_ejection_time": "5m",
        "max_ejection_percent": 10
      }
    }
  ],
  "tracing": {
    "enabled": true,
    "service_name": "orders",
    "resource": {
      "deployment.environment": "prod"
    },
    "propagators": [
      "tracecontext",
      "b3"
    ],
    "sampler": {
      "type": "traceidratio",
      "ratio": 0.25
    },
    "ignore": [
      {
        "path": "/health"
      },
      {
        "regex": "^/metrics"
      }
    ],
    "exporter": {
      "protocol": "grpc",
      "endpoint": "http://user:[redacted]@collector:4317",
      "headers": {
        "x-api-token": "[redacted]"
      },
      "timeout": "2s",
      "compression": "gzip",
      "tls": {
        "ca_file": "/etc/st/ca.pem",
        "insecure_skip_verify": false
      }
    },
    "batch": {
      "max_queue_size": 100,
      "max_export_batch_size": 512,
      "schedule_delay": "2m",
      "export_timeout": "30s",
      "max_queue_bytes": 33554432,
      "max_export_bytes": 2097152
    },
    "span_limits": {
      "attribute_value_length": 1024,
      "attribute_count": 128
    },
    "request_headers": [],
    "response_headers": [],
    "allow_sensitive_headers": [],
    "server_timing": false
  },
  "limits": {
    "max_request_headers_bytes": 61440,
    "max_request_headers_count": 100,
    "request_header_timeout": "10s",
    "idle_timeout": "1m",
    "drain_timeout": "15s",
    "buffer_bytes": 65536,
    "max_concurrent_streams": 100,
    "max_connections": 0
  },
  "access_log": {
    "path": "stdout",
    "format": "json",
    "max_queue_bytes": 1048576
  }
}
)";
  EXPECT_EQ(dumpConfigJson(withPasswordInEndpoint()), expected);
}

TEST(ConfigDump, SecretsNeverAppear) {
  std::string dump = dumpConfigJson(withPasswordInEndpoint());
  EXPECT_EQ(dump.find("s3cret-token"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("pa55"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("server.key"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("other.key"), std::string::npos) << dump;
}

TEST(ConfigDump, EscapesStringsForJson) {
  Config cfg;
  cfg.tracing.service_name = "a\"b\\c\x01";
  std::string dump = dumpConfigJson(cfg);
  EXPECT_NE(dump.find(R"("service_name": "a\"b\\c\u0001")"), std::string::npos) << dump;
}

// Found by tests/fuzz/config_fuzz.cc (findings/config/regression-dump-invalid-utf8): YAML values
// may hold bytes that are not UTF-8, and JSON text must be UTF-8 (RFC 8259 §8.1). Invalid bytes
// become U+FFFD; valid multi-byte characters pass unchanged.
TEST(ConfigDump, RepairsInvalidUtf8) {
  Config cfg;
  cfg.tracing.service_name =
      "d\x9b\x8a caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc0\xaf \xed\xa0\x80 \xe2\x82";
  std::string dump = dumpConfigJson(cfg);
  EXPECT_NE(
      dump.find("\"service_name\": \"d\\ufffd\\ufffd caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
                "\\ufffd\\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\""),
      std::string::npos)
      << dump;
}

TEST(ConfigDump, EmptyCollectionsStayValid) {
  Config cfg;
  std::string dump = dumpConfigJson(cfg);
  EXPECT_NE(dump.find("\"listeners\": [],"), std::string::npos) << dump;
  EXPECT_NE(dump.find("\"headers\": {},"), std::string::npos) << dump;
}

TEST(ConfigDump, DurationsReadBackExactly) {
  for (int64_t ms : {0, 1, 999, 1000, 1500, 60000, 90000, 3600000, 7200000, 86400000}) {
    Duration d{ms};
    EXPECT_EQ(parseDuration(formatDuration(d)), d) << formatDuration(d);
  }
  EXPECT_EQ(formatDuration(Duration{250}), "250ms");
  EXPECT_EQ(formatDuration(Duration{120000}), "2m");
}

}  // namespace
}  // namespace sidetrace::config
