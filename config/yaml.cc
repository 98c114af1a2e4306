// YAML config file (ARCHITECTURE §5). The walk is strict on purpose: an unknown key is almost
// always a typo that would otherwise silently fall back to a default, so every map lists the keys
// it accepts and every error names the file, the line and the key path.

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/checks.h"
#include "config/load.h"
#include "config/url.h"

namespace sidetrace::config {

namespace {

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// ---- ${VAR} substitution on the raw text ----------------------------------------------------

bool isVarStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool isVarChar(char c) {
  return isVarStart(c) || (c >= '0' && c <= '9');
}

// Substitutes everywhere except in comments, so a commented-out "${SECRET}" in an example does not
// demand the variable. Comment detection tracks quotes per line, which is all YAML needs here.
std::string substituteEnv(const std::string& text, const std::string& source,
                          const EnvLookup& env) {
  std::string out;
  out.reserve(text.size());
  int line = 1;
  bool in_comment = false;
  char quote = 0;
  char prev = '\n';
  for (size_t i = 0; i < text.size();) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      in_comment = false;
      quote = 0;
      out += c;
      prev = c;
      ++i;
      continue;
    }
    if (in_comment) {
      out += c;
      prev = c;
      ++i;
      continue;
    }
    if (quote != 0) {
      if (quote == '"' && c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
        out += text.substr(i, 2);
        prev = text[i + 1];
        i += 2;
        continue;
      }
      if (c == quote) {
        quote = 0;
      }
    } else if (c == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) {
      in_comment = true;
      out += c;
      prev = c;
      ++i;
      continue;
    } else if ((c == '"' || c == '\'') &&
               std::string_view(" \t\n[{,:-").find(prev) != std::string_view::npos) {
      quote = c;
    }
    if (text.compare(i, 3, "$${") == 0) {
      out += "${";  // escaped: a literal "${"
      prev = '{';
      i += 3;
      continue;
    }
    if (text.compare(i, 2, "${") != 0) {
      out += c;
      prev = c;
      ++i;
      continue;
    }
    size_t close = text.find('}', i + 2);
    size_t eol = text.find('\n', i);
    std::string where = source + ":" + std::to_string(line) + ": ";
    if (close == std::string::npos || (eol != std::string::npos && close > eol)) {
      throw ConfigError(where + "unterminated '${' (write '$${' for a literal '${')");
    }
    std::string inner = text.substr(i + 2, close - i - 2);
    std::string name = inner;
    std::optional<std::string> fallback;
    if (size_t d = inner.find(":-"); d != std::string::npos) {
      name = inner.substr(0, d);
      fallback = inner.substr(d + 2);
    }
    if (name.empty() || !isVarStart(name[0]) || !std::all_of(name.begin(), name.end(), isVarChar)) {
      throw ConfigError(where + "bad variable reference '${" + inner +
                        "}' (expected ${NAME} or ${NAME:-default})");
    }
    std::optional<std::string> value = env(name);
    if (fallback && (!value || value->empty())) {
      value = fallback;  // shell semantics: ":-" also covers set-but-empty
    }
    if (!value) {
      throw ConfigError(where + "environment variable " + name + " is not set (use ${" + name +
                        ":-default} to give a default)");
    }
    out += *value;
    prev = '}';
    i = close + 1;
  }
  return out;
}

// ---- strict tree walk -----------------------------------------------------------------------

class Walker {
 public:
  explicit Walker(const std::string& source) : source_(source) {}

  [[noreturn]] void fail(const YAML::Node& n, const std::string& path,
                         const std::string& msg) const {
    std::string where = source_;
    if (n.IsDefined() && n.Mark().line >= 0) {
      where += ":" + std::to_string(n.Mark().line + 1);
    }
    throw ConfigError(where + ": " + (path.empty() ? "" : path + ": ") + msg);
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }
  static std::string index(const std::string& path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

  static std::string describe(const YAML::Node& n) {
    switch (n.Type()) {
      case YAML::NodeType::Map:
        return "a map";
      case YAML::NodeType::Sequence:
        return "a list";
      case YAML::NodeType::Scalar:
        return "'" + n.Scalar() + "'";
      default:
        return "nothing";
    }
  }

  // Calls f(key, value, key_path) for each entry; unknown or duplicate keys are errors.
  void walkMap(const YAML::Node& n, const std::string& path,
               std::initializer_list<std::string_view> allowed,
               const std::function<void(const std::string&, const YAML::Node&, const std::string&)>&
                   f) const {
    if (!n.IsMap()) {
      fail(n, path, "expected a map, got " + describe(n));
    }
    std::set<std::string> seen;
    for (const auto& kv : n) {
      const YAML::Node& k = kv.first;
      if (!k.IsScalar()) {
        fail(k, path, "keys must be plain strings");
      }
      const std::string& key = k.Scalar();
      std::string sub = join(path, key);
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string msg = "unknown key (expected one of:";
        bool first = true;
        for (auto a : allowed) {
          msg += first ? " " : ", ";
          msg += a;
          first = false;
        }
        fail(k, sub, msg + ")");
      }
      if (!seen.insert(key).second) {
        fail(k, sub, "duplicate key");
      }
      f(key, kv.second, sub);
    }
  }

  // Map whose keys are free-form names (resource attributes, headers); values are scalars.
  KeyValues stringMap(const YAML::Node& n, const std::string& path, bool lower_keys) const {
    if (!n.IsMap()) {
      fail(n, path, "expected a map, got " + describe(n));
    }
    KeyValues out;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar() || kv.first.Scalar().empty()) {
        fail(kv.first, path, "keys must be non-empty strings");
      }
      std::string key = lower_keys ? detail::toLower(kv.first.Scalar()) : kv.first.Scalar();
      std::string sub = join(path, key);
      for (const auto& existing : out) {
        if (existing.first == key) {
          fail(kv.first, sub, "duplicate key");
        }
      }
      out.emplace_back(key, str(kv.second, sub));
    }
    return out;
  }

  void forEachItem(const YAML::Node& n, const std::string& path,
                   const std::function<void(const YAML::Node&, const std::string&)>& f) const {
    if (!n.IsSequence()) {
      fail(n, path, "expected a list, got " + describe(n));
    }
    size_t i = 0;
    for (const auto& item : n) {
      f(item, index(path, i++));
    }
  }

  std::string str(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) {
      fail(n, path, "expected a string, got " + describe(n));
    }
    return n.Scalar();
  }

  std::string nonEmpty(const YAML::Node& n, const std::string& path) const {
    std::string s = str(n, path);
    if (s.empty()) {
      fail(n, path, "must not be empty");
    }
    return s;
  }

  // A value from a fixed list; `check` is one of the detail::check* functions.
  std::string choice(const YAML::Node& n, const std::string& path,
                     std::string (*check)(const std::string&)) const {
    std::string s = str(n, path);
    if (std::string err = check(s); !err.empty()) {
      fail(n, path, err);
    }
    return s;
  }

  uint32_t u32(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) {
      fail(n, path, "expected a non-negative integer, got " + describe(n));
    }
    auto v = detail::parseUint32(n.Scalar());
    if (!v) {
      fail(n, path, "expected a non-negative integer, got '" + n.Scalar() + "'");
    }
    return *v;
  }

  uint32_t positive(const YAML::Node& n, const std::string& path) const {
    uint32_t v = u32(n, path);
    if (v == 0) {
      fail(n, path, "must be greater than 0");
    }
    return v;
  }

  bool boolean(const YAML::Node& n, const std::string& path) const {
    if (n.IsScalar()) {
      std::string s = detail::toLower(n.Scalar());
      if (s == "true") {
        return true;
      }
      if (s == "false") {
        return false;
      }
    }
    fail(n, path, "expected true or false, got " + describe(n));
  }

  double ratio(const YAML::Node& n, const std::string& path) const {
    if (!n.IsScalar()) {
      fail(n, path, "expected a number between 0 and 1, got " + describe(n));
    }
    auto v = detail::parseDouble(n.Scalar());
    if (!v || !(*v >= 0.0 && *v <= 1.0)) {
      fail(n, path, "expected a number between 0 and 1, got '" + n.Scalar() + "'");
    }
    return *v;
  }

  Duration duration(const YAML::Node& n, const std::string& path) const {
    std::string s = str(n, path);
    Duration d;
    try {
      d = parseDuration(s);
    } catch (const ConfigError& e) {
      fail(n, path, e.what());
    }
    if (d.count() <= 0) {
      fail(n, path, "must be greater than 0");
    }
    return d;
  }

  HostPort address(const YAML::Node& n, const std::string& path) const {
    std::string s = str(n, path);
    try {
      return parseHostPort(s);
    } catch (const ConfigError& e) {
      fail(n, path, e.what());
    }
  }

  Regex regex(const YAML::Node& n, const std::string& path) const {
    std::string s = str(n, path);
    try {
      return detail::compileRegex(s);
    } catch (const ConfigError& e) {
      fail(n, path, e.what());
    }
  }

  std::string urlPath(const YAML::Node& n, const std::string& path) const {
    std::string s = str(n, path);
    if (s.empty() || s[0] != '/') {
      fail(n, path, "must start with '/', got '" + s + "'");
    }
    return s;
  }

 private:
  const std::string& source_;
};

void upsert(KeyValues& kvs, const std::string& key, const std::string& value) {
  for (auto& kv : kvs) {
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  }
  kvs.emplace_back(key, value);
}

// admin.tracez: { max_bytes: N } (0 = off).
void parseTracez(const Walker& w, const YAML::Node& n, const std::string& path, AdminConfig& a) {
  w.walkMap(n, path, {"max_bytes"},
            [&](const std::string&, const YAML::Node& v, const std::string& sub) {
              a.tracez_max_bytes = w.u32(v, sub);
              if (a.tracez_max_bytes > AdminConfig::kMaxTracezBytes) {
                w.fail(v, sub,
                       "must be at most " + std::to_string(AdminConfig::kMaxTracezBytes) +
                           " (1 GiB), got " + v.Scalar());
              }
            });
}

HeaderMatch parseHeaderMatch(const Walker& w, const YAML::Node& n, const std::string& path) {
  HeaderMatch h;
  int kinds = 0;
  bool named = false;
  w.walkMap(n, path, {"name", "exact", "prefix", "regex", "present"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "name") {
                h.name = detail::toLower(w.nonEmpty(v, sub));
                named = true;
                return;
              }
              if (++kinds > 1) {
                w.fail(v, sub, "only one of exact, prefix, regex, present");
              }
              if (key == "exact") {
                h.kind = HeaderMatch::Kind::Exact;
                h.value = w.str(v, sub);
              } else if (key == "prefix") {
                h.kind = HeaderMatch::Kind::Prefix;
                h.value = w.str(v, sub);
              } else if (key == "regex") {
                h.kind = HeaderMatch::Kind::Regex;
                h.regex = w.regex(v, sub);
              } else if (!w.boolean(v, sub)) {
                w.fail(v, sub, "only 'present: true' is supported");
              }
            });
  if (!named) {
    w.fail(n, path + ".name", "missing (the header to match)");
  }
  return h;
}

RouteMatch parseMatch(const Walker& w, const YAML::Node& n, const std::string& path) {
  RouteMatch m;
  bool has_path = false;
  w.walkMap(n, path, {"path", "prefix", "regex", "host", "method", "headers"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "path" || key == "prefix" || key == "regex") {
                if (has_path) {
                  w.fail(v, sub, "only one of path, prefix, regex");
                }
                has_path = true;
              }
              if (key == "path") {
                m.path_kind = RouteMatch::PathKind::Exact;
                m.path = w.urlPath(v, sub);
              } else if (key == "prefix") {
                m.path_kind = RouteMatch::PathKind::Prefix;
                m.path = w.urlPath(v, sub);
              } else if (key == "regex") {
                m.path_kind = RouteMatch::PathKind::Regex;
                m.path_regex = w.regex(v, sub);
              } else if (key == "host") {
                m.host = detail::toLower(w.choice(v, sub, detail::checkHostPattern));
                if (m.host == "*") {
                  m.host.clear();
                }
              } else if (key == "method") {
                m.method = detail::toUpper(w.nonEmpty(v, sub));
              } else {
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  m.headers.push_back(parseHeaderMatch(w, item, ip));
                });
              }
            });
  return m;
}

RetryPolicy parseRetryPolicy(const Walker& w, const YAML::Node& n, const std::string& path) {
  RetryPolicy p;
  bool has_retry_on = false;
  w.walkMap(
      n, path, {"retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "back_off"},
      [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
        if (key == "retry_on") {
          has_retry_on = true;
          w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
            uint32_t bit = detail::retryOnBit(w.str(item, ip));
            if (bit == 0) {
              w.fail(item, ip,
                     "unknown retry condition '" + item.Scalar() +
                         "' (expected one of: " + detail::kRetryOnNames + ")");
            }
            p.retry_on |= bit;
          });
        } else if (key == "num_retries") {
          p.num_retries = w.u32(v, sub);
          if (p.num_retries > 10) {
            w.fail(v, sub, "at most 10 retries");
          }
        } else if (key == "per_try_timeout") {
          p.per_try_timeout = w.duration(v, sub);
        } else if (key == "retriable_status_codes") {
          w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
            uint32_t st = w.u32(item, ip);
            if (st < 100 || st > 599) {
              w.fail(item, ip, "expected an HTTP status 100..599, got '" + item.Scalar() + "'");
            }
            p.retriable_status_codes.push_back(static_cast<int>(st));
          });
        } else {
          w.walkMap(v, sub, {"base_interval", "max_interval"},
                    [&](const std::string& k2, const YAML::Node& v2, const std::string& s2) {
                      (k2 == "base_interval" ? p.base_interval : p.max_interval) =
                          w.duration(v2, s2);
                    });
          if (p.max_interval < p.base_interval) {
            w.fail(v, sub + ".max_interval", "must not be less than base_interval");
          }
        }
      });
  if (!has_retry_on) {
    w.fail(n, path + ".retry_on", "missing (e.g. retry_on: [ connect-failure, gateway-error ])");
  }
  return p;
}

// A header name as the header lists take it: an RFC 9110 token, kept lower-case.
std::string headerName(const Walker& w, const YAML::Node& n, const std::string& path) {
  std::string name = detail::toLower(w.nonEmpty(n, path));
  for (char c : name) {
    const bool tchar = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!tchar) {
      w.fail(n, path, "not a header name: '" + n.Scalar() + "'");
    }
  }
  return name;
}

std::vector<std::string> headerList(const Walker& w, const YAML::Node& n, const std::string& path) {
  std::vector<std::string> names;
  w.forEachItem(n, path, [&](const YAML::Node& item, const std::string& ip) {
    std::string name = headerName(w, item, ip);
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      w.fail(item, ip, "duplicate header '" + name + "'");
    }
    names.push_back(std::move(name));
  });
  return names;
}

// `type_required`: a route's sampler names its type (a lone ratio would silently mean the
// default type, which ignores it).
SamplerConfig parseSampler(const Walker& w, const YAML::Node& n, const std::string& path,
                           SamplerConfig sampler, bool type_required) {
  bool typed = false;
  w.walkMap(n, path, {"type", "ratio"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "type") {
                sampler.type = w.choice(v, sub, detail::checkSamplerType);
                typed = true;
              } else {
                sampler.ratio = w.ratio(v, sub);
              }
            });
  if (type_required && !typed) {
    w.fail(n, path + ".type", "missing (e.g. sampler: { type: traceidratio, ratio: 0.5 })");
  }
  return sampler;
}

// Static span attributes may not take a key sidetrace sets itself (OTLP wants each key once per
// span): the semantic-convention namespaces it writes are reserved.
void checkStaticAttributeKey(const Walker& w, const YAML::Node& key_node, const std::string& path) {
  static constexpr std::string_view kReserved[] = {"http.",   "url.",     "server.",
                                                   "client.", "network.", "user_agent.",
                                                   "error.",  "rpc.",     "sidetrace."};
  const std::string& key = key_node.Scalar();
  for (std::string_view prefix : kReserved) {
    if (key.starts_with(prefix)) {
      w.fail(key_node, path,
             "'" + key +
                 "' is in a namespace sidetrace sets itself (reserved: http., url., "
                 "server., client., network., user_agent., error., rpc., sidetrace.)");
    }
  }
}

RouteTracing parseRouteTracing(const Walker& w, const YAML::Node& n, const std::string& path) {
  RouteTracing t;
  w.walkMap(n, path, {"enabled", "sampler", "attributes", "request_headers", "response_headers"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "enabled") {
                t.enabled = w.boolean(v, sub);
              } else if (key == "sampler") {
                t.sampler = parseSampler(w, v, sub, SamplerConfig{}, true);
              } else if (key == "attributes") {
                t.attributes = w.stringMap(v, sub, false);
                for (const auto& kv : v) {
                  checkStaticAttributeKey(w, kv.first, Walker::join(sub, kv.first.Scalar()));
                }
              } else if (key == "request_headers") {
                t.request_headers = headerList(w, v, sub);
              } else {
                t.response_headers = headerList(w, v, sub);
              }
            });
  return t;
}

Route parseRoute(const Walker& w, const YAML::Node& n, const std::string& path) {
  Route r;
  bool named = false;
  YAML::Node cluster_node;  // kept for the error line
  bool has_cluster = false;
  w.walkMap(n, path,
            {"name", "match", "cluster", "direct_response", "timeout", "retry_policy", "tracing"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "name") {
                r.name = w.nonEmpty(v, sub);
                named = true;
              } else if (key == "tracing") {
                r.tracing = parseRouteTracing(w, v, sub);
              } else if (key == "match") {
                r.match = parseMatch(w, v, sub);
              } else if (key == "cluster") {
                r.cluster = w.nonEmpty(v, sub);
                cluster_node = v;
                has_cluster = true;
              } else if (key == "direct_response") {
                DirectResponse d;
                w.walkMap(v, sub, {"status", "body"},
                          [&](const std::string& k2, const YAML::Node& v2, const std::string& s2) {
                            if (k2 == "status") {
                              uint32_t st = w.u32(v2, s2);
                              if (st < 100 || st > 599) {
                                w.fail(
                                    v2, s2,
                                    "expected an HTTP status 100..599, got '" + v2.Scalar() + "'");
                              }
                              d.status = static_cast<int>(st);
                            } else {
                              d.body = w.str(v2, s2);
                            }
                          });
                r.direct_response = d;
              } else if (key == "retry_policy") {
                r.retry_policy = parseRetryPolicy(w, v, sub);
              } else {
                r.timeout = w.duration(v, sub);
              }
            });
  if (has_cluster && r.direct_response) {
    w.fail(cluster_node, path, "a route has either cluster or direct_response, not both");
  }
  if (!has_cluster && !r.direct_response) {
    w.fail(n, path, "a route needs cluster or direct_response");
  }
  if (!named) {
    r.name = r.direct_response ? "direct" : r.cluster;
  }
  return r;
}

TlsCertificate parseCertificate(const Walker& w, const YAML::Node& n, const std::string& path) {
  TlsCertificate c;
  w.walkMap(n, path, {"cert", "key"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              (key == "cert" ? c.cert : c.key) = w.nonEmpty(v, sub);
            });
  if (c.cert.empty() || c.key.empty()) {
    w.fail(n, path, "needs both cert and key");
  }
  return c;
}

TlsConfig parseListenerTls(const Walker& w, const YAML::Node& n, const std::string& path) {
  TlsConfig tls;
  w.walkMap(n, path, {"cert", "key", "certificates", "client_ca", "require_client_cert"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "cert") {
                tls.cert = w.nonEmpty(v, sub);
              } else if (key == "key") {
                tls.key = w.nonEmpty(v, sub);
              } else if (key == "certificates") {
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  tls.certificates.push_back(parseCertificate(w, item, ip));
                });
              } else if (key == "client_ca") {
                tls.client_ca = w.nonEmpty(v, sub);
              } else {
                tls.require_client_cert = w.boolean(v, sub);
              }
            });
  if (tls.cert.empty() || tls.key.empty()) {
    w.fail(n, path, "needs both cert and key");
  }
  return tls;
}

Listener parseListener(const Walker& w, const YAML::Node& n, const std::string& path, size_t i) {
  Listener l;
  l.name = i == 0 ? "ingress" : "listener" + std::to_string(i);
  bool has_address = false;
  w.walkMap(n, path, {"name", "address", "tls", "routes", "trace_context"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "name") {
                l.name = w.nonEmpty(v, sub);
              } else if (key == "trace_context") {
                const std::string mode = w.str(v, sub);
                auto trust = detail::parseTraceContext(mode);
                if (!trust) {
                  w.fail(v, sub, "expected trust, restart or ignore, got '" + mode + "'");
                }
                l.trace_context = *trust;
              } else if (key == "address") {
                l.address = w.address(v, sub);
                has_address = true;
              } else if (key == "tls") {
                l.tls = parseListenerTls(w, v, sub);
              } else {
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  l.routes.push_back(parseRoute(w, item, ip));
                });
              }
            });
  if (!has_address) {
    w.fail(n, path + ".address", "missing (e.g. address: 0.0.0.0:15001)");
  }
  return l;
}

// `tls: {}` is valid: TLS verified against the system store with the endpoint's name.
UpstreamTlsConfig parseClusterTls(const Walker& w, const YAML::Node& n, const std::string& path) {
  UpstreamTlsConfig tls;
  w.walkMap(n, path, {"ca_file", "sni", "cert", "key", "insecure_skip_verify"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "ca_file") {
                tls.ca_file = w.nonEmpty(v, sub);
              } else if (key == "sni") {
                tls.sni = detail::toLower(w.choice(v, sub, detail::checkServerName));
              } else if (key == "cert") {
                tls.cert = w.nonEmpty(v, sub);
              } else if (key == "key") {
                tls.key = w.nonEmpty(v, sub);
              } else {
                tls.insecure_skip_verify = w.boolean(v, sub);
              }
            });
  if (!tls.cert.empty() && tls.key.empty()) {
    w.fail(n, path + ".key", "missing (a client certificate needs its private key)");
  }
  if (tls.cert.empty() && !tls.key.empty()) {
    w.fail(n, path + ".cert", "missing (a client key needs its certificate)");
  }
  return tls;
}

// An endpoint is "host:port", or { address: "host:port", weight: N } to give it a weight.
ClusterEndpoint parseEndpoint(const Walker& w, const YAML::Node& n, const std::string& path) {
  if (n.IsScalar()) {
    return ClusterEndpoint{w.address(n, path)};
  }
  if (!n.IsMap()) {
    w.fail(n, path,
           "expected \"host:port\" or { address: \"host:port\", weight: N }, got " +
               Walker::describe(n));
  }
  ClusterEndpoint ep;
  bool has_address = false;
  w.walkMap(n, path, {"address", "weight"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "address") {
                static_cast<HostPort&>(ep) = w.address(v, sub);
                has_address = true;
              } else {
                ep.weight = w.u32(v, sub);
                if (std::string err = detail::checkEndpointWeight(ep.weight); !err.empty()) {
                  w.fail(v, sub, err);
                }
              }
            });
  if (!has_address) {
    w.fail(n, path + ".address", "missing (e.g. { address: \"127.0.0.1:8080\", weight: 2 })");
  }
  return ep;
}

// `type_node` gets the type as written, so that the caller can point at it once the cluster's
// protocol (which a grpc check needs) is known.
HealthCheck parseHealthCheck(const Walker& w, const YAML::Node& n, const std::string& path,
                             YAML::Node& type_node) {
  HealthCheck h;
  w.walkMap(n, path,
            {"type", "path", "expected_statuses", "service_name", "interval", "timeout",
             "healthy_threshold", "unhealthy_threshold", "panic"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "type") {
                h.type = w.choice(v, sub, detail::checkHealthCheckType);
                type_node = v;
              } else if (key == "service_name") {
                h.service_name = w.str(v, sub);
              } else if (key == "path") {
                h.path = w.nonEmpty(v, sub);
                if (h.path.front() != '/') {
                  w.fail(v, sub, "must start with '/'");
                }
              } else if (key == "expected_statuses") {
                w.forEachItem(v, sub, [&](const YAML::Node& it, const std::string& ip) {
                  uint32_t st = w.u32(it, ip);
                  if (st < 100 || st > 599) {
                    w.fail(it, ip, "expected an HTTP status 100..599");
                  }
                  h.expected_statuses.push_back(static_cast<int>(st));
                });
              } else if (key == "interval") {
                h.interval = w.duration(v, sub);
              } else if (key == "timeout") {
                h.timeout = w.duration(v, sub);
              } else if (key == "healthy_threshold") {
                h.healthy_threshold = w.positive(v, sub);
              } else if (key == "unhealthy_threshold") {
                h.unhealthy_threshold = w.positive(v, sub);
              } else {
                h.panic = w.boolean(v, sub);
              }
            });
  if (h.interval.count() <= 0 || h.timeout.count() <= 0) {
    w.fail(n, path + ".interval", "interval and timeout must be greater than 0");
  }
  return h;
}

OutlierDetection parseOutlierDetection(const Walker& w, const YAML::Node& n,
                                       const std::string& path) {
  OutlierDetection o;
  w.walkMap(n, path,
            {"consecutive_5xx", "consecutive_connect_failures", "base_ejection_time",
             "max_ejection_time", "max_ejection_percent"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "consecutive_5xx") {
                o.consecutive_5xx = w.u32(v, sub);
              } else if (key == "consecutive_connect_failures") {
                o.consecutive_connect_failures = w.u32(v, sub);
              } else if (key == "base_ejection_time") {
                o.base_ejection_time = w.duration(v, sub);
              } else if (key == "max_ejection_time") {
                o.max_ejection_time = w.duration(v, sub);
              } else {
                o.max_ejection_percent = w.u32(v, sub);
                if (o.max_ejection_percent > 100) {
                  w.fail(v, sub, "expected a percentage 0..100");
                }
              }
            });
  if (o.max_ejection_time < o.base_ejection_time) {
    w.fail(n, path + ".max_ejection_time", "must not be less than base_ejection_time");
  }
  return o;
}

Cluster parseCluster(const Walker& w, const YAML::Node& n, const std::string& path) {
  Cluster c;
  YAML::Node check_type;  // health_check.type as written, for the protocol check at the end
  w.walkMap(n, path,
            {"name", "endpoints", "protocol", "lb", "connect_timeout", "max_idle_connections",
             "tls", "retry_budget", "circuit_breakers", "outlier_detection", "health_check",
             "idle_timeout", "max_connection_duration", "dns_refresh_rate"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "name") {
                c.name = w.nonEmpty(v, sub);
              } else if (key == "endpoints") {
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  c.endpoints.push_back(parseEndpoint(w, item, ip));
                });
                if (c.endpoints.empty()) {
                  w.fail(v, sub, "needs at least one endpoint");
                }
              } else if (key == "protocol") {
                c.protocol = w.choice(v, sub, detail::checkClusterProtocol);
              } else if (key == "lb") {
                c.lb = w.choice(v, sub, detail::checkLb);
              } else if (key == "connect_timeout") {
                c.connect_timeout = w.duration(v, sub);
              } else if (key == "tls") {
                c.tls = parseClusterTls(w, v, sub);
              } else if (key == "idle_timeout") {
                c.idle_timeout = w.duration(v, sub);
                if (c.idle_timeout.count() <= 0) {
                  w.fail(v, sub, "must be greater than 0");
                }
              } else if (key == "max_connection_duration") {
                c.max_connection_duration = w.duration(v, sub);
              } else if (key == "dns_refresh_rate") {
                c.dns_refresh_rate = w.duration(v, sub);
              } else if (key == "health_check") {
                c.health_check = parseHealthCheck(w, v, sub, check_type);
              } else if (key == "outlier_detection") {
                c.outlier_detection = parseOutlierDetection(w, v, sub);
              } else if (key == "circuit_breakers") {
                w.walkMap(
                    v, sub,
                    {"max_connections", "max_pending_requests", "max_requests", "max_retries"},
                    [&](const std::string& k2, const YAML::Node& v2, const std::string& s2) {
                      auto& b = c.circuit_breakers;
                      (k2 == "max_connections"        ? b.max_connections
                       : k2 == "max_pending_requests" ? b.max_pending_requests
                       : k2 == "max_requests"         ? b.max_requests
                                                      : b.max_retries) = w.u32(v2, s2);
                    });
              } else if (key == "retry_budget") {
                w.walkMap(v, sub, {"budget_percent", "min_retry_concurrency"},
                          [&](const std::string& k2, const YAML::Node& v2, const std::string& s2) {
                            if (k2 == "budget_percent") {
                              c.retry_budget.budget_percent = w.u32(v2, s2);
                              if (c.retry_budget.budget_percent > 100) {
                                w.fail(v2, s2, "expected a percentage 0..100");
                              }
                            } else {
                              c.retry_budget.min_retry_concurrency = w.u32(v2, s2);
                            }
                          });
              } else {
                c.max_idle_connections = w.u32(v, sub);
              }
            });
  if (c.name.empty()) {
    w.fail(n, path + ".name", "missing");
  }
  if (c.endpoints.empty()) {
    w.fail(n, path + ".endpoints", "missing (e.g. endpoints: [ \"127.0.0.1:8080\" ])");
  }
  if (c.health_check) {
    if (std::string e = detail::checkHealthCheckProtocol(c.health_check->type, c.protocol);
        !e.empty()) {
      w.fail(check_type, path + ".health_check.type", e);
    }
  }
  return c;
}

IgnoreRule parseIgnore(const Walker& w, const YAML::Node& n, const std::string& path) {
  IgnoreRule rule;
  int kinds = 0;
  bool has_value = false;
  YAML::Node value_node;
  w.walkMap(n, path, {"path", "prefix", "regex", "header", "value"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "value") {
                rule.value = w.str(v, sub);
                has_value = true;
                value_node = v;
                return;
              }
              if (++kinds > 1) {
                w.fail(v, sub, "only one of path, prefix, regex, header");
              }
              if (key == "path") {
                rule.kind = IgnoreRule::Kind::Path;
                rule.value = w.urlPath(v, sub);
              } else if (key == "prefix") {
                rule.kind = IgnoreRule::Kind::Prefix;
                rule.value = w.urlPath(v, sub);
              } else if (key == "regex") {
                rule.kind = IgnoreRule::Kind::Regex;
                rule.regex = w.regex(v, sub);
              } else {
                rule.kind = IgnoreRule::Kind::Header;
                rule.header = detail::toLower(w.nonEmpty(v, sub));
              }
            });
  if (kinds == 0) {
    w.fail(n, path, "needs one of path, prefix, regex, header");
  }
  if (rule.kind == IgnoreRule::Kind::Header) {
    if (!has_value) {
      rule.value = "*";  // header present, any value
    }
  } else if (has_value) {
    w.fail(value_node, path + ".value", "only valid together with header");
  }
  return rule;
}

void parseExporterTls(const Walker& w, const YAML::Node& n, const std::string& path,
                      ExporterConfig::Tls& tls) {
  w.walkMap(n, path, {"ca_file", "insecure_skip_verify"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "ca_file") {
                tls.ca_file = w.nonEmpty(v, sub);
              } else {
                tls.insecure_skip_verify = w.boolean(v, sub);
              }
            });
}

// OTLP/HTTP: a file's endpoint is the traces URL when it has a path, else a collector base URL
// that gets /v1/traces (config/url.h); no endpoint at all means the OTLP default.
void resolveOtlpHttpEndpoint(const Walker& w, const YAML::Node* endpoint_node,
                             const std::string& path, ExporterConfig& e) {
  if (e.protocol != "http/protobuf" && e.protocol != "http/json") {
    return;
  }
  e.endpoint =
      e.endpoint.empty() ? "http://localhost:4318/v1/traces" : otlpHttpTracesUrl(e.endpoint);
  if (endpoint_node != nullptr) {
    try {
      parseHttpUrl(e.endpoint);
    } catch (const ConfigError& err) {
      w.fail(*endpoint_node, path, err.what());
    }
  }
}

void parseExporter(const Walker& w, const YAML::Node& n, const std::string& path,
                   ExporterConfig& e) {
  YAML::Node endpoint_node;  // kept for the error line
  bool has_endpoint = false;
  w.walkMap(n, path, {"protocol", "endpoint", "headers", "timeout", "compression", "tls"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "protocol") {
                e.protocol = w.choice(v, sub, detail::checkExporterProtocol);
              } else if (key == "endpoint") {
                e.endpoint = w.nonEmpty(v, sub);
                endpoint_node = v;
                has_endpoint = true;
              } else if (key == "headers") {
                for (auto& [hk, hv] : w.stringMap(v, sub, true)) {
                  upsert(e.headers, hk, hv);
                }
              } else if (key == "timeout") {
                e.timeout = w.duration(v, sub);
              } else if (key == "compression") {
                std::string c = w.str(v, sub);
                if (c != "gzip" && c != "none" && !c.empty()) {
                  w.fail(v, sub, "expected gzip or none, got '" + c + "'");
                }
                e.compression = c == "gzip" ? "gzip" : "";
              } else {
                parseExporterTls(w, v, sub, e.tls);
              }
            });
  resolveOtlpHttpEndpoint(w, has_endpoint ? &endpoint_node : nullptr, path + ".endpoint", e);
  if (e.protocol == "grpc" && has_endpoint) {  // checked here for the line; validate() checks env's
    try {
      parseGrpcEndpoint(e.endpoint);
    } catch (const ConfigError& err) {
      w.fail(endpoint_node, path + ".endpoint", err.what());
    }
  }
}

void parseBatch(const Walker& w, const YAML::Node& n, const std::string& path, BatchConfig& b) {
  w.walkMap(n, path,
            {"max_queue_size", "max_export_batch_size", "schedule_delay", "export_timeout",
             "max_queue_bytes", "max_export_bytes"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "max_queue_size") {
                b.max_queue_size = w.positive(v, sub);
              } else if (key == "max_export_batch_size") {
                b.max_export_batch_size = w.positive(v, sub);
              } else if (key == "schedule_delay") {
                b.schedule_delay = w.duration(v, sub);
              } else if (key == "export_timeout") {
                b.export_timeout = w.duration(v, sub);
              } else if (key == "max_queue_bytes") {
                b.max_queue_bytes = w.positive(v, sub);
              } else {
                b.max_export_bytes = w.positive(v, sub);
              }
            });
}

void parseSpanLimits(const Walker& w, const YAML::Node& n, const std::string& path, SpanLimits& l) {
  w.walkMap(n, path, {"attribute_value_length", "attribute_count"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "attribute_value_length") {
                l.attribute_value_length = w.positive(v, sub);
              } else {
                l.attribute_count = w.u32(v, sub);  // 0: no attributes at all
              }
            });
}

void parseTracing(const Walker& w, const YAML::Node& n, const std::string& path, TracingConfig& t) {
  bool has_service_name = false;
  w.walkMap(n, path,
            {"enabled", "service_name", "resource", "propagators", "sampler", "ignore", "exporter",
             "batch", "span_limits", "server_timing", "request_headers", "response_headers",
             "allow_sensitive_headers"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "enabled") {
                t.enabled = w.boolean(v, sub);
              } else if (key == "request_headers") {
                t.request_headers = headerList(w, v, sub);
              } else if (key == "response_headers") {
                t.response_headers = headerList(w, v, sub);
              } else if (key == "allow_sensitive_headers") {
                t.allow_sensitive_headers = headerList(w, v, sub);
                for (size_t i = 0; i < t.allow_sensitive_headers.size(); ++i) {
                  const auto& name = t.allow_sensitive_headers[i];
                  if (std::find(std::begin(kSensitiveHeaders), std::end(kSensitiveHeaders), name) ==
                      std::end(kSensitiveHeaders)) {
                    w.fail(v[i], Walker::index(sub, i),
                           "'" + name +
                               "' is not a sensitive header (only authorization, cookie, "
                               "set-cookie and proxy-authorization need allowing)");
                  }
                }
              } else if (key == "server_timing") {
                t.server_timing = w.boolean(v, sub);
              } else if (key == "service_name") {
                t.service_name = w.nonEmpty(v, sub);
                has_service_name = true;
              } else if (key == "resource") {
                for (auto& [k, val] : w.stringMap(v, sub, false)) {
                  if (k == "service.name") {
                    if (!has_service_name) {
                      t.service_name = val;  // an explicit service_name key wins
                    }
                  } else {
                    upsert(t.resource, k, val);
                  }
                }
              } else if (key == "propagators") {
                std::vector<std::string> names;
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  names.push_back(w.choice(item, ip, detail::checkPropagator));
                });
                t.propagators = detail::normalizePropagators(names);
              } else if (key == "sampler") {
                t.sampler = parseSampler(w, v, sub, t.sampler, false);
              } else if (key == "ignore") {
                t.ignore.clear();
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  t.ignore.push_back(parseIgnore(w, item, ip));
                });
              } else if (key == "exporter") {
                parseExporter(w, v, sub, t.exporter);
              } else if (key == "batch") {
                parseBatch(w, v, sub, t.batch);
              } else {
                parseSpanLimits(w, v, sub, t.span_limits);
              }
            });
}

void parseLimits(const Walker& w, const YAML::Node& n, const std::string& path, Limits& l) {
  w.walkMap(n, path,
            {"max_request_headers_bytes", "max_request_headers_count", "request_header_timeout",
             "idle_timeout", "drain_timeout", "max_pipelined_requests", "buffer_bytes",
             "max_concurrent_streams", "max_connections"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "max_request_headers_bytes") {
                l.max_request_headers_bytes = w.positive(v, sub);
              } else if (key == "max_request_headers_count") {
                l.max_request_headers_count = w.positive(v, sub);
              } else if (key == "request_header_timeout") {
                l.request_header_timeout = w.duration(v, sub);
              } else if (key == "idle_timeout") {
                l.idle_timeout = w.duration(v, sub);
              } else if (key == "drain_timeout") {
                l.drain_timeout = w.duration(v, sub);
              } else if (key == "max_pipelined_requests") {
                // Still accepted so configs that set it load, but it bounds nothing: requests are
                // parsed one at a time and read-ahead is bounded by buffer_bytes (README).
                (void)w.positive(v, sub);
              } else if (key == "max_connections") {
                l.max_connections = w.u32(v, sub);
              } else if (key == "max_concurrent_streams") {
                l.max_concurrent_streams = w.positive(v, sub);
              } else {
                l.buffer_bytes = w.positive(v, sub);
              }
            });
}

// egress: { address, allow: [host patterns], timeout, connect_timeout, process }. The address is
// required: an egress block is how a config turns egress on.
EgressConfig parseEgress(const Walker& w, const YAML::Node& n, const std::string& path) {
  EgressConfig e;
  bool has_address = false;
  w.walkMap(n, path, {"address", "allow", "timeout", "connect_timeout", "process"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "address") {
                e.address = w.address(v, sub);
                has_address = true;
              } else if (key == "allow") {
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  std::string pattern = detail::toLower(w.nonEmpty(item, ip));
                  if (std::string err = detail::checkHostPattern(pattern); !err.empty()) {
                    w.fail(item, ip, err);
                  }
                  e.allow.push_back(std::move(pattern));
                });
              } else if (key == "timeout") {
                e.timeout = w.duration(v, sub);
              } else if (key == "process") {
                e.process = w.boolean(v, sub);
              } else {
                e.connect_timeout = w.duration(v, sub);
              }
            });
  if (!has_address) {
    w.fail(n, path + ".address", "missing (e.g. address: 127.0.0.1:15002)");
  }
  return e;
}

bool sensitiveHeader(std::string_view name) {
  return std::find(std::begin(kSensitiveHeaders), std::end(kSensitiveHeaders), name) !=
         std::end(kSensitiveHeaders);
}

// A header list may name a credential header only when tracing.allow_sensitive_headers does too.
void checkSensitive(const Walker& w, const TracingConfig& t, const std::vector<std::string>& names,
                    const YAML::Node& list, const std::string& path) {
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    if (sensitiveHeader(name) &&
        std::find(t.allow_sensitive_headers.begin(), t.allow_sensitive_headers.end(), name) ==
            t.allow_sensitive_headers.end()) {
      const YAML::Node item = list && list.IsSequence() && i < list.size() ? list[i] : YAML::Node();
      w.fail(item, Walker::index(path, i),
             "'" + name +
                 "' carries credentials: its values would be exported in spans (name it in "
                 "tracing.allow_sensitive_headers as well to record it anyway)");
    }
  }
}

// The tracing section's list, then the route's names it does not have.
std::vector<std::string> mergeHeaderLists(const std::vector<std::string>& global,
                                          const std::vector<std::string>& route) {
  std::vector<std::string> merged = global;
  for (const auto& name : route) {
    if (std::find(global.begin(), global.end(), name) == global.end()) {
      merged.push_back(name);
    }
  }
  return merged;
}

// Once the whole file is read (the tracing section may follow the listeners): the sensitive-
// header rule for every header list, and each route's lists completed with the tracing
// section's.
void finishHeaderLists(const Walker& w, const YAML::Node& root, Config& cfg) {
  TracingConfig& t = cfg.tracing;
  if (const YAML::Node tn = root["tracing"]; tn) {
    checkSensitive(w, t, t.request_headers, tn["request_headers"], "tracing.request_headers");
    checkSensitive(w, t, t.response_headers, tn["response_headers"], "tracing.response_headers");
  }
  const YAML::Node ln = root["listeners"];
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    for (size_t r = 0; r < cfg.listeners[i].routes.size(); ++r) {
      auto& rt = cfg.listeners[i].routes[r].tracing;
      if (!rt || !ln || !ln.IsSequence() || i >= ln.size()) {
        continue;
      }
      const YAML::Node node = ln[i]["routes"][r]["tracing"];
      const std::string path =
          Walker::index(Walker::index("listeners", i) + ".routes", r) + ".tracing";
      checkSensitive(w, t, rt->request_headers, node["request_headers"], path + ".request_headers");
      checkSensitive(w, t, rt->response_headers, node["response_headers"],
                     path + ".response_headers");
      rt->request_headers = mergeHeaderLists(t.request_headers, rt->request_headers);
      rt->response_headers = mergeHeaderLists(t.response_headers, rt->response_headers);
    }
  }
}

}  // namespace

void applyYaml(Config& cfg, const std::string& yaml_text, const std::string& source_name,
               const EnvLookup& env) {
  std::string text = substituteEnv(yaml_text, source_name, env);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(source_name + ":" + std::to_string(e.mark.line + 1) +
                      ": yaml syntax error: " + e.msg);
  }
  if (root.IsNull()) {
    return;  // an empty file (or only comments) changes nothing
  }
  Walker w(source_name);
  if (!root.IsMap()) {
    w.fail(root, "", "expected a map of settings at the top level, got " + Walker::describe(root));
  }
  // Route → cluster references are checked here too so that the error can carry the line.
  std::vector<std::pair<YAML::Node, std::string>> cluster_refs;
  w.walkMap(root, "",
            {"admin", "workers", "listeners", "clusters", "egress", "tracing", "limits",
             "access_log", "log_level", "log_format"},
            [&](const std::string& key, const YAML::Node& v, const std::string& sub) {
              if (key == "admin") {
                w.walkMap(v, sub, {"address", "enabled", "tracez"},
                          [&](const std::string& k2, const YAML::Node& v2, const std::string& s2) {
                            if (k2 == "address") {
                              cfg.admin.address = w.address(v2, s2);
                            } else if (k2 == "tracez") {
                              parseTracez(w, v2, s2, cfg.admin);
                            } else {
                              cfg.admin.enabled = w.boolean(v2, s2);
                            }
                          });
              } else if (key == "workers") {
                cfg.workers = w.u32(v, sub);
              } else if (key == "listeners") {
                cfg.listeners.clear();
                size_t i = 0;
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  cfg.listeners.push_back(parseListener(w, item, ip, i));
                  const Listener& l = cfg.listeners.back();
                  const YAML::Node routes = item["routes"];
                  for (size_t r = 0; r < l.routes.size(); ++r) {
                    if (!l.routes[r].cluster.empty()) {
                      cluster_refs.emplace_back(routes[r]["cluster"],
                                                Walker::index(ip + ".routes", r) + ".cluster");
                    }
                  }
                  ++i;
                });
              } else if (key == "clusters") {
                cfg.clusters.clear();
                w.forEachItem(v, sub, [&](const YAML::Node& item, const std::string& ip) {
                  cfg.clusters.push_back(parseCluster(w, item, ip));
                });
              } else if (key == "egress") {
                cfg.egress = parseEgress(w, v, sub);
              } else if (key == "tracing") {
                parseTracing(w, v, sub, cfg.tracing);
              } else if (key == "limits") {
                parseLimits(w, v, sub, cfg.limits);
              } else if (key == "access_log") {
                w.walkMap(v, sub, {"path", "format", "max_queue_bytes"},
                          [&](const std::string& k2, const YAML::Node& v2, const std::string& s2) {
                            if (k2 == "path") {
                              cfg.access_log.path = w.str(v2, s2);
                            } else if (k2 == "max_queue_bytes") {
                              cfg.access_log.max_queue_bytes = w.positive(v2, s2);
                            } else {
                              cfg.access_log.format =
                                  w.choice(v2, s2, detail::checkAccessLogFormat);
                            }
                          });
              } else if (key == "log_format") {
                cfg.log_format = w.choice(v, sub, detail::checkLogFormat);
              } else {
                cfg.log_level = w.choice(v, sub, detail::checkLogLevel);
              }
            });
  for (const auto& [node, path] : cluster_refs) {
    if (cfg.findCluster(node.Scalar()) == nullptr) {
      w.fail(node, path, "unknown cluster '" + node.Scalar() + "'");
    }
  }
  finishHeaderLists(w, root, cfg);
}

}  // namespace sidetrace::config
