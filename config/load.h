#pragma once
// Building a Config from its three sources. Precedence, lowest first: built-in defaults,
// OTEL_* environment variables (as the OpenTelemetry SDK spec defines them), the YAML file,
// command-line flags. Every error is a ConfigError whose what() names the key path (or flag)
// and, for YAML, the line: "config.yaml:12: listeners[0].routes[1].timeout: bad duration 'x'".

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/config.h"

namespace sidetrace::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Returns the variable's value or nullopt; injectable so tests never touch the real environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup processEnv();

// What the command line asked for (ARCHITECTURE §3).
struct CliOptions {
  std::optional<std::string> config_path;
  bool validate_only = false;
  bool show_version = false;
  bool show_help = false;
  // Zero-config flags; each, when set, overrides the file.
  std::optional<std::string> listen;         // ADDR (host:port or :port)
  std::optional<std::string> upstream;       // HOST:PORT
  std::optional<std::string> service_name;   // tracing.service_name
  std::optional<std::string> otlp_endpoint;  // exporter grpc to URL
  std::optional<std::string> admin;          // ADDR
  std::optional<uint32_t> workers;
  std::vector<std::string> ignore_paths;  // each adds { prefix: PATH } ignore rule
  std::optional<std::string> egress;      // ADDR: egress.address (adds the egress block)
  // Every listener's trace_context (the egress listener's excepted: it trusts its app).
  std::optional<TraceContextTrust> trace_context;
  std::optional<std::string> log_level;
  std::optional<std::string> log_format;
  // Where to write the bound addresses once listening (proxy::runServer); not a config key,
  // it only tells a supervisor or a test which ports a configured port 0 became.
  std::optional<std::string> ports_file;
};

// Throws ConfigError("--flag: ...") on unknown flags or bad values.
CliOptions parseArgs(int argc, const char* const* argv);
std::string usage();

// Parse "1s", "250ms", "2m", "1h", or a bare integer as milliseconds.
Duration parseDuration(const std::string& text);
// Parse "host:port", "[v6]:port", ":port" (host 0.0.0.0). Throws ConfigError.
HostPort parseHostPort(const std::string& text);

// Apply OTEL_* variables (ARCHITECTURE §4) onto cfg.
void applyEnv(Config& cfg, const EnvLookup& env);
// Apply YAML text onto cfg; `${VAR}` and `${VAR:-default}` are substituted from env first.
// source_name is used in messages (usually the file path).
void applyYaml(Config& cfg, const std::string& yaml_text, const std::string& source_name,
               const EnvLookup& env);
// Apply zero-config flags onto cfg. --listen + --upstream create listener "ingress" with one
// catch-all route "default" to cluster "upstream" when the config has none.
void applyFlags(Config& cfg, const CliOptions& cli);
// Cross-field checks (routes name existing clusters, at least one listener, ...). Throws.
void validate(const Config& cfg);

// With cfg.egress set: appends the egress listener (Listener::egress, one catch-all route) and
// the egress cluster (Cluster::egress, no endpoints), both named kEgressName, so the server,
// metrics and the exchange treat egress as one more listener. After validate().
void finishEgress(Config& cfg);

// All of the above in order. Reads the file named by cli.config_path.
Config buildConfig(const CliOptions& cli, const EnvLookup& env);

}  // namespace sidetrace::config
