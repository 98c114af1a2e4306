// The YAML config loader (config/load.h: ${VAR} substitution, YAML parsing, every section's
// checks, validate()) and the URL / address parsers it uses. Input: a first line of environment
// assignments "NAME=value;NAME2=value" (what ${NAME} and ${NAME:-default} see), then the YAML text.
//
// Properties: the loader either yields a config that validates, whose /config_dump is valid JSON,
// or throws ConfigError whose message names where ("fuzz.yaml:LINE: key.path: ..." or
// "key.path: ..."); nothing else may escape. Each input line is also tried as an OTLP/HTTP URL
// and as a host:port: what parses must parse again, from its own printed form, to the same value.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cstdint>
#include <exception>
#include <map>
#include <string>

#include "config/dump.h"
#include "config/load.h"
#include "config/url.h"
#include "tests/fuzz/fuzz_input.h"

using sidetrace::fuzz::check;
using sidetrace::fuzz::violated;
namespace config = sidetrace::config;

namespace {

constexpr const char* kSource = "fuzz.yaml";

void checkError(const config::ConfigError& e, bool from_yaml) {
  const std::string what = e.what();
  const size_t colon = what.find(": ");
  check(colon != std::string::npos && colon > 0, "a config error that names nothing", what);
  if (from_yaml) {
    check(what.rfind(std::string(kSource) + ":", 0) == 0, "a YAML error without file and line",
          what);
  }
}

void checkUrl(const std::string& text) {
  config::HttpUrl url;
  try {
    url = config::parseHttpUrl(text);
  } catch (const config::ConfigError& e) {
    // Alone it cannot know the key: the loader puts the key path and line in front.
    check(*e.what() != '\0', "an empty URL error");
    return;
  }
  check(!url.host.empty() && url.port != 0 && !url.target.empty() && url.target[0] == '/',
        "a parsed URL without host, port or origin-form target", text);
  const std::string printed = (url.tls ? "https://" : "http://") + url.authority() + url.target;
  config::HttpUrl again;
  try {
    again = config::parseHttpUrl(printed);
  } catch (const config::ConfigError& e) {
    violated("a URL printed from a parsed one does not parse", text, printed);
  }
  check(again.tls == url.tls && again.host == url.host && again.port == url.port &&
            again.target == url.target,
        "a URL parses differently from its printed form", text, printed);
  (void)config::otlpHttpTracesUrl(text);
}

void checkHostPort(const std::string& text) {
  config::HostPort hp;
  try {
    hp = config::parseHostPort(text);
  } catch (const config::ConfigError& e) {
    check(*e.what() != '\0', "an empty host:port error");
    return;
  }
  config::HostPort again;
  try {
    again = config::parseHostPort(hp.str());
  } catch (const config::ConfigError& e) {
    violated("host:port printed from a parsed one does not parse", text, hp.str());
  }
  check(again.host == hp.host && again.port == hp.port, "host:port does not round-trip", text,
        hp.str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sidetrace::fuzz::FuzzInput in(data, size);
  std::map<std::string, std::string> vars;
  std::string_view env_line = in.line();
  while (!env_line.empty()) {
    const size_t end = std::min(env_line.find(';'), env_line.size());
    const std::string_view item = env_line.substr(0, end);
    if (const size_t eq = item.find('='); eq != std::string_view::npos) {
      vars[std::string(item.substr(0, eq))] = std::string(item.substr(eq + 1));
    }
    env_line.remove_prefix(std::min(end + 1, env_line.size()));
  }
  const std::string yaml(in.rest());
  const config::EnvLookup env = [&vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };

  config::Config cfg;
  bool loaded = false;
  try {
    config::applyYaml(cfg, yaml, kSource, env);
    loaded = true;
    config::validate(cfg);
    const std::string dump = config::dumpConfigJson(cfg);
    google::protobuf::Value doc;
    check(google::protobuf::util::JsonStringToMessage(dump, &doc).ok(), "/config_dump is not JSON",
          dump);
  } catch (const config::ConfigError& e) {
    checkError(e, !loaded);
  } catch (const std::exception& e) {
    violated("the config loader threw something other than ConfigError", e.what(), yaml);
  }

  size_t start = 0;
  for (int lines = 0; start <= yaml.size() && lines < 64; ++lines) {
    size_t end = yaml.find('\n', start);
    if (end == std::string::npos) {
      end = yaml.size();
    }
    std::string line = yaml.substr(start, end - start);
    // The value of a "key: value" line, as it would reach the parsers from the config.
    if (const size_t kv = line.find(": "); kv != std::string::npos) {
      line = line.substr(kv + 2);
    }
    checkUrl(line);
    checkHostPort(line);
    start = end + 1;
  }
  return 0;
}
