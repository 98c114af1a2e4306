#include "config/checks.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <initializer_list>

#include <re2/re2.h>

#include "config/load.h"

namespace sidetrace::config::detail {

namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::string oneOf(const std::string& what, const std::string& v,
                  std::initializer_list<const char*> allowed) {
  for (const char* a : allowed) {
    if (v == a) {
      return "";
    }
  }
  std::string msg = "unknown " + what + " '" + v + "' (expected one of:";
  bool first = true;
  for (const char* a : allowed) {
    msg += first ? " " : ", ";
    msg += a;
    first = false;
  }
  return msg + ")";
}

}  // namespace

std::string trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && isSpace(s[b])) {
    ++b;
  }
  while (e > b && isSpace(s[e - 1])) {
    --e;
  }
  return std::string(s.substr(b, e - b));
}

std::string toLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string toUpper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string percentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexValue(s[i + 1]) >= 0 && hexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string nextFlagValue(int argc, const char* const* argv, int& i, const std::string& flag) {
  if (i + 1 >= argc || std::string_view(argv[i + 1]).rfind("--", 0) == 0) {
    throw ConfigError(flag + ": missing value");
  }
  return argv[++i];
}

std::optional<uint32_t> parseUint32(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  uint32_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

std::optional<double> parseDouble(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

Regex compileRegex(const std::string& source) {
  RE2::Options opts;
  opts.set_log_errors(false);  // the error goes into the ConfigError, naming key and line
  auto re = std::make_shared<const RE2>(source, opts);
  if (!re->ok()) {
    throw ConfigError("invalid regex '" + source + "': " + re->error());
  }
  return Regex{source, std::move(re)};
}

std::string checkLogLevel(const std::string& v) {
  return oneOf("log level", v, {"trace", "debug", "info", "warn", "error", "off"});
}

std::optional<TraceContextTrust> parseTraceContext(std::string_view v) {
  if (v == "trust") {
    return TraceContextTrust::Trust;
  }
  if (v == "restart") {
    return TraceContextTrust::Restart;
  }
  if (v == "ignore") {
    return TraceContextTrust::Ignore;
  }
  return std::nullopt;
}

std::string checkLogFormat(const std::string& v) {
  return oneOf("log format", v, {"json", "text"});
}

std::string checkSamplerType(const std::string& v) {
  return oneOf("sampler", v,
               {"always_on", "always_off", "traceidratio", "parentbased_always_on",
                "parentbased_always_off", "parentbased_traceidratio"});
}

std::string checkPropagator(const std::string& v) {
  return oneOf("propagator", v, {"tracecontext", "baggage", "b3", "b3multi", "none"});
}

std::string checkExporterProtocol(const std::string& v) {
  return oneOf("exporter protocol", v, {"grpc", "http/protobuf", "http/json", "console", "none"});
}

std::string checkClusterProtocol(const std::string& v) {
  return oneOf("cluster protocol", v, {"http1", "http2"});
}

std::string checkLb(const std::string& v) {
  if (v == "ring_hash" || v == "maglev") {
    return "load balancer '" + v +
           "' is not implemented yet (expected one of: round_robin, random, least_request)";
  }
  return oneOf("load balancer", v, {"round_robin", "random", "least_request"});
}

std::string checkHealthCheckType(const std::string& v) {
  return oneOf("health check type", v, {"http", "tcp", "grpc"});
}

std::string checkHealthCheckProtocol(const std::string& type, const std::string& protocol) {
  if (type == "grpc" && protocol != "http2") {
    return "grpc health checks need the cluster's protocol: http2 (gRPC runs over HTTP/2), not " +
           protocol;
  }
  return "";
}

std::string checkEndpointWeight(uint32_t w) {
  if (w < 1 || w > kMaxEndpointWeight) {
    return "must be between 1 and " + std::to_string(kMaxEndpointWeight) + ", got " +
           std::to_string(w);
  }
  return "";
}

std::string checkAccessLogFormat(const std::string& v) {
  return oneOf("access log format", v, {"json", "text"});
}

std::string checkHostPattern(const std::string& v) {
  size_t star = v.find('*');
  if (star == std::string::npos) {
    return "";
  }
  if (star == 0 && v.size() > 2 && v[1] == '.' && v.find('*', 1) == std::string::npos) {
    return "";
  }
  return "bad host pattern '" + v + "' (only a leading '*.' wildcard is supported)";
}

std::string checkServerName(const std::string& v) {
  const std::string bad = "bad server name '" + v + "' ";
  if (v.empty() || v.size() > 253) {
    return bad + "(expected a DNS name of 1..253 characters)";
  }
  bool all_digits_and_dots = true;
  size_t label = 0;
  for (char c : v) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c == '.') {
      if (label == 0) {
        return bad + "(empty label)";
      }
      label = 0;
      continue;
    }
    if (!alnum && c != '-' && c != '_') {
      return bad + "(expected letters, digits, '-' and '.'; IP addresses take no SNI)";
    }
    if (c < '0' || c > '9') {
      all_digits_and_dots = false;
    }
    if (++label > 63) {
      return bad + "(a label is longer than 63 characters)";
    }
  }
  if (label == 0) {
    return bad + "(empty label)";
  }
  if (all_digits_and_dots) {
    return bad + "(an IP address takes no SNI: leave sni unset to verify the IP)";
  }
  return "";
}

std::vector<std::string> normalizePropagators(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (n != "none" && std::find(out.begin(), out.end(), n) == out.end()) {
      out.push_back(n);
    }
  }
  return out;
}

namespace {
struct RetryOnName {
  const char* name;
  uint32_t bit;
};
constexpr RetryOnName kRetryOn[] = {
    {"connect-failure", RetryPolicy::kConnectFailure},
    {"reset", RetryPolicy::kReset},
    {"5xx", RetryPolicy::k5xx},
    {"gateway-error", RetryPolicy::kGatewayError},
    {"retriable-status-codes", RetryPolicy::kRetriableStatusCodes},
    {"cancelled", RetryPolicy::kGrpcCancelled},
    {"deadline-exceeded", RetryPolicy::kGrpcDeadlineExceeded},
    {"resource-exhausted", RetryPolicy::kGrpcResourceExhausted},
    {"unavailable", RetryPolicy::kGrpcUnavailable},
};
}  // namespace

uint32_t retryOnBit(const std::string& name) {
  for (const auto& r : kRetryOn) {
    if (name == r.name) {
      return r.bit;
    }
  }
  return 0;
}

std::vector<std::string> retryOnNames(uint32_t bits) {
  std::vector<std::string> out;
  for (const auto& r : kRetryOn) {
    if ((bits & r.bit) != 0) {
      out.emplace_back(r.name);
    }
  }
  return out;
}

}  // namespace sidetrace::config::detail
