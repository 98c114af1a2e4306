#pragma once
// A fake environment for config tests: the real process environment is never read.

#include <map>
#include <string>

#include "config/load.h"

namespace sidetrace::config::testing {

inline EnvLookup envFrom(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

// Runs f and returns the ConfigError message, or "<no error>".
template <class F>
std::string errorOf(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace sidetrace::config::testing
