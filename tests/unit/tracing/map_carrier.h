#pragma once
// A HeaderCarrier over a std::map for propagator and tracer tests.

#include <map>
#include <string>

#include "tracing/propagator.h"

namespace sidetrace::tracing {

class MapCarrier : public HeaderCarrier {
 public:
  MapCarrier() = default;
  MapCarrier(std::initializer_list<std::pair<const std::string, std::string>> init)
      : headers(init) {}
  std::optional<std::string_view> get(std::string_view name) const override {
    auto it = headers.find(std::string(name));
    if (it == headers.end()) {
      return std::nullopt;
    }
    return std::string_view(it->second);
  }
  size_t count(std::string_view name) const override {
    return headers.count(std::string(name)) + more.count(std::string(name));
  }
  std::optional<std::string_view> getList(std::string_view name,
                                          std::string& scratch) const override {
    auto first = get(name);
    auto [from, to] = more.equal_range(std::string(name));
    if (!first || from == to) {
      return first;
    }
    scratch.assign(*first);
    for (auto it = from; it != to; ++it) {
      scratch += ',';
      scratch += it->second;
    }
    return std::string_view(scratch);
  }
  void set(std::string_view name, std::string_view value) override {
    more.erase(std::string(name));
    headers[std::string(name)] = std::string(value);
  }
  void remove(std::string_view name) override {
    headers.erase(std::string(name));
    more.erase(std::string(name));
  }
  // A further field line with this name (after the one in `headers`), as a client may send.
  void addLine(const std::string& name, const std::string& value) {
    if (headers.count(name) == 0) {
      headers[name] = value;
    } else {
      more.emplace(name, value);
    }
  }

  std::map<std::string, std::string> headers;    // the first line of each header
  std::multimap<std::string, std::string> more;  // further lines, in order
};

}  // namespace sidetrace::tracing
