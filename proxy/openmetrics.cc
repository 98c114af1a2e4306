#include "proxy/openmetrics.h"

#include <cstdlib>
#include <set>

namespace sidetrace::proxy {

namespace {

// The metric name of a "# HELP name ..." or "# TYPE name ..." line ("" for other lines).
std::string_view metadataName(std::string_view line) {
  if (!line.starts_with("# HELP ") && !line.starts_with("# TYPE ")) {
    return {};
  }
  line.remove_prefix(7);
  return line.substr(0, line.find(' '));
}

template <typename Fn>
void forEachLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    fn(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
  }
}

}  // namespace

bool acceptsOpenMetrics(std::string_view accept) {
  // Media ranges separated by ','; parameters by ';'. Case-insensitive type, q=0 means "not".
  while (!accept.empty()) {
    const size_t comma = accept.find(',');
    std::string_view range = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view{} : accept.substr(comma + 1);
    std::string lower;
    for (char c : range) {
      if (c != ' ' && c != '\t') {
        lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      }
    }
    if (!lower.starts_with("application/openmetrics-text")) {
      continue;
    }
    const size_t q = lower.find(";q=");
    if (q == std::string::npos || std::strtod(lower.c_str() + q + 3, nullptr) > 0) {
      return true;
    }
  }
  return false;
}

std::string toOpenMetrics(std::string_view prometheus_text) {
  std::set<std::string_view> counters;
  forEachLine(prometheus_text, [&](std::string_view line) {
    if (line.starts_with("# TYPE ") && line.ends_with(" counter")) {
      counters.insert(metadataName(line));
    }
  });
  std::string out;
  out.reserve(prometheus_text.size() + 16);
  forEachLine(prometheus_text, [&](std::string_view line) {
    const std::string_view name = metadataName(line);
    if (!name.empty() && name.ends_with("_total") && counters.count(name) != 0) {
      out.append(line.substr(0, 7));
      out.append(name.substr(0, name.size() - 6));
      out.append(line.substr(7 + name.size()));
    } else {
      out.append(line);
    }
    out += '\n';
  });
  out += "# EOF\n";
  return out;
}

}  // namespace sidetrace::proxy
