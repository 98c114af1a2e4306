#pragma once
// Small text helpers and the allowed-value lists shared by the three config sources (env, YAML,
// flags) and validate(), so that each value is checked by one rule whichever source set it.
// Internal to config/; not part of the contract.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace sidetrace::config::detail {

std::string trim(std::string_view s);
std::string toLower(std::string_view s);
std::string toUpper(std::string_view s);
std::vector<std::string> split(std::string_view s, char sep);
// Decodes %XX escapes; a malformed escape is kept as written (W3C baggage decoders are lenient).
std::string percentDecode(std::string_view s);

// The value of a flag given as "--flag VALUE" (argv[i] is the flag): argv[i + 1], with i moved
// past it. "--config --validate" is a forgotten value, not a file named "--validate": a next
// argument that starts with "--", or none, throws ConfigError("FLAG: missing value").
std::string nextFlagValue(int argc, const char* const* argv, int& i, const std::string& flag);

std::optional<uint32_t> parseUint32(std::string_view s);
std::optional<double> parseDouble(std::string_view s);

// Compiles with RE2 (linear-time matching); throws ConfigError("invalid regex '...': ...").
Regex compileRegex(const std::string& source);

// Each returns "" when the value is acceptable, else a message (without key path) saying what is.
std::string checkLogLevel(const std::string& v);
std::string checkLogFormat(const std::string& v);
// listeners[].trace_context / --trace-context: trust | restart | ignore; nullopt otherwise.
std::optional<TraceContextTrust> parseTraceContext(std::string_view v);
std::string checkSamplerType(const std::string& v);
std::string checkPropagator(const std::string& v);  // accepts "none"
std::string checkExporterProtocol(
    const std::string& v);  // grpc|http/protobuf|http/json|console|none
std::string checkClusterProtocol(const std::string& v);
std::string checkLb(const std::string& v);
std::string checkHealthCheckType(const std::string& v);  // http | tcp | grpc
// A health check type against its cluster's protocol: grpc needs http2.
std::string checkHealthCheckProtocol(const std::string& type, const std::string& protocol);
std::string checkEndpointWeight(uint32_t w);  // 1..kMaxEndpointWeight
std::string checkAccessLogFormat(const std::string& v);
std::string checkHostPattern(const std::string& v);  // route match host
// A TLS server name (SNI): a DNS name, not an IP literal (RFC 6066 forbids those in SNI).
std::string checkServerName(const std::string& v);

// A retry_on name (Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on names) as its
// RetryPolicy::On bit; 0 when unknown. The inverse for dumps.
uint32_t retryOnBit(const std::string& name);
std::vector<std::string> retryOnNames(uint32_t bits);
inline constexpr const char* kRetryOnNames =
    "connect-failure, reset, 5xx, gateway-error, retriable-status-codes, cancelled, "
    "deadline-exceeded, resource-exhausted, unavailable";

// Drops "none" and duplicates: an empty list is how "propagate nothing" is stored.
std::vector<std::string> normalizePropagators(const std::vector<std::string>& names);

}  // namespace sidetrace::config::detail
