#include "config/url.h"

#include "config/checks.h"
#include "config/load.h"

namespace sidetrace::config {

namespace {

// Where the path starts in a URL with a scheme ("" and npos when there is no path).
size_t pathStart(std::string_view url) {
  size_t scheme_end = url.find("://");
  size_t from = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  return url.find_first_of("/?#", from);
}

}  // namespace

std::string HttpUrl::authority() const {
  std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != (tls ? 443 : 80)) {
    out += ":" + std::to_string(port);
  }
  return out;
}

HttpUrl parseHttpUrl(const std::string& url) {
  auto bad = [&](const std::string& why) -> ConfigError {
    return ConfigError("bad URL '" + url + "': " + why);
  };
  HttpUrl u;
  std::string_view rest = url;
  std::string scheme = detail::toLower(rest.substr(0, rest.find("://")));
  if (rest.find("://") == std::string_view::npos) {
    throw bad("expected http://host:port/path or https://host:port/path");
  }
  if (scheme == "https") {
    u.tls = true;
  } else if (scheme != "http") {
    throw bad("unsupported scheme '" + scheme + "' (expected http or https)");
  }
  rest.remove_prefix(scheme.size() + 3);
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (tail.find('#') != std::string_view::npos) {
    throw bad("a fragment ('#') has no meaning here");
  }
  if (authority.find('@') != std::string_view::npos) {
    throw bad("user info in the URL is not supported (send credentials with exporter headers)");
  }
  std::string_view port_text;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      throw bad("missing ']' after IPv6 address");
    }
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        throw bad("unexpected text after ']'");
      }
      port_text = after.substr(1);
      if (port_text.empty()) {
        throw bad("empty port");
      }
    }
  } else {
    size_t colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty() || port_text.find(':') != std::string_view::npos) {
        throw bad(port_text.empty() ? "empty port" : "IPv6 addresses need brackets");
      }
    }
  }
  if (u.host.empty()) {
    throw bad("missing host");
  }
  for (char c : u.host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '[' || c == ']' || c == '\\') {
      throw bad("bad host '" + u.host + "'");
    }
  }
  u.port = u.tls ? 443 : 80;
  if (!port_text.empty()) {
    auto n = detail::parseUint32(port_text);
    if (!n || *n == 0 || *n > 65535) {
      throw bad("port must be a number 1..65535, got '" + std::string(port_text) + "'");
    }
    u.port = static_cast<uint16_t>(*n);
  }
  for (char c : tail) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      throw bad("spaces, control and non-ASCII characters must be percent-encoded");
    }
  }
  u.target = tail.empty() || tail[0] != '/' ? "/" + std::string(tail) : std::string(tail);
  return u;
}

GrpcEndpoint parseGrpcEndpoint(const std::string& endpoint) {
  const std::string_view e = endpoint;
  for (std::string_view unix_scheme : {"unix:", "unix-abstract:"}) {
    if (e.substr(0, unix_scheme.size()) == unix_scheme) {
      if (e.size() == unix_scheme.size()) {
        throw ConfigError("bad endpoint '" + endpoint + "': no socket path after '" +
                          std::string(unix_scheme) + "'");
      }
      return GrpcEndpoint{endpoint, false};
    }
  }
  constexpr const char* kExpected =
      "expected http://host:port, https://host:port, host:port or unix:/path/to/socket";
  const size_t scheme_end = e.find("://");
  const bool has_scheme = scheme_end != std::string_view::npos;
  if (has_scheme) {
    const std::string scheme = detail::toLower(e.substr(0, scheme_end));
    if (scheme != "http" && scheme != "https") {
      throw ConfigError("bad endpoint '" + endpoint + "': unsupported scheme '" + scheme + "' (" +
                        kExpected + ")");
    }
  }
  HttpUrl url;
  bool parsed = true;
  try {
    url = parseHttpUrl(has_scheme ? endpoint : "http://" + endpoint);
  } catch (const ConfigError&) {
    if (has_scheme) {
      throw;
    }
    parsed = false;  // not host:port either: the message below says what is expected
  }
  const size_t authority_start = has_scheme ? scheme_end + 3 : 0;
  const std::string_view authority =
      e.substr(authority_start, e.find_first_of("/?#", authority_start) - authority_start);
  // Without a scheme the port is required: "collector" alone would go to gRPC's default, 443.
  const bool port_written =
      authority.find(':', authority.rfind(']') + 1) != std::string_view::npos;  // npos + 1 == 0
  if (!has_scheme && (!parsed || !port_written)) {
    throw ConfigError("bad endpoint '" + endpoint + "': " + kExpected);
  }
  return GrpcEndpoint{std::string(authority), url.tls};
}

std::string otlpHttpTracesUrl(std::string_view endpoint) {
  size_t start = pathStart(endpoint);
  std::string_view path =
      start == std::string_view::npos ? std::string_view{} : endpoint.substr(start);
  if (!path.empty() && path != "/") {
    return std::string(endpoint);
  }
  std::string out(endpoint.substr(0, start));
  out += "/v1/traces";
  return out;
}

}  // namespace sidetrace::config
