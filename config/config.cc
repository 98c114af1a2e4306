#include "config/config.h"

#include <re2/re2.h>

namespace sidetrace::config {

std::string HostPort::str() const {
  // IPv6 literals carry ':' and need brackets so the port stays unambiguous.
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

bool Regex::matches(std::string_view s) const {
  if (!re) {
    return false;
  }
  return RE2::PartialMatch(re2::StringPiece(s.data(), s.size()), *re);
}

const Cluster* Config::findCluster(std::string_view name) const {
  for (const auto& c : clusters) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

}  // namespace sidetrace::config
