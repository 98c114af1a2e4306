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
  void set(std::string_view name, std::string_view value) override {
    headers[std::string(name)] = std::string(value);
  }
  void remove(std::string_view name) override { headers.erase(std::string(name)); }

  std::map<std::string, std::string> headers;
};

}  // namespace sidetrace::tracing
