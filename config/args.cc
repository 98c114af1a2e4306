// Command-line parsing (ARCHITECTURE §3). Hand-written because the grammar is a dozen flags and
// the error text must name the flag exactly; getopt would add global state and worse messages.

#include <string>
#include <string_view>

#include "config/checks.h"
#include "config/load.h"

namespace sidetrace::config {

namespace {

bool takesValue(std::string_view flag) {
  return flag == "--config" || flag == "--listen" || flag == "--upstream" ||
         flag == "--service-name" || flag == "--otlp-endpoint" || flag == "--admin" ||
         flag == "--workers" || flag == "--ignore-path" || flag == "--log-level" ||
         flag == "--log-format" || flag == "--ports-file" || flag == "--egress" ||
         flag == "--trace-context";
}

bool isSwitch(std::string_view flag) {
  return flag == "--validate" || flag == "--version" || flag == "--help" || flag == "-h";
}

void setValue(CliOptions& o, const std::string& flag, const std::string& value) {
  auto nonEmpty = [&]() {
    if (value.empty()) {
      throw ConfigError(flag + ": empty value");
    }
    return value;
  };
  if (flag == "--config") {
    o.config_path = nonEmpty();
  } else if (flag == "--listen") {
    o.listen = nonEmpty();
  } else if (flag == "--upstream") {
    o.upstream = nonEmpty();
  } else if (flag == "--service-name") {
    o.service_name = nonEmpty();
  } else if (flag == "--otlp-endpoint") {
    o.otlp_endpoint = nonEmpty();
  } else if (flag == "--admin") {
    o.admin = nonEmpty();
  } else if (flag == "--workers") {
    auto n = detail::parseUint32(value);
    if (!n) {
      throw ConfigError(flag + ": expected a non-negative integer, got '" + value + "'");
    }
    o.workers = *n;
  } else if (flag == "--ignore-path") {
    if (value.empty() || value[0] != '/') {
      throw ConfigError(flag + ": path must start with '/', got '" + value + "'");
    }
    o.ignore_paths.push_back(value);
  } else if (flag == "--log-level") {
    std::string err = detail::checkLogLevel(value);
    if (!err.empty()) {
      throw ConfigError(flag + ": " + err);
    }
    o.log_level = value;
  } else if (flag == "--log-format") {
    std::string err = detail::checkLogFormat(value);
    if (!err.empty()) {
      throw ConfigError(flag + ": " + err);
    }
    o.log_format = value;
  } else if (flag == "--ports-file") {
    o.ports_file = nonEmpty();
  } else if (flag == "--egress") {
    o.egress = nonEmpty();
  } else if (flag == "--trace-context") {
    o.trace_context = detail::parseTraceContext(value);
    if (!o.trace_context) {
      throw ConfigError(flag + ": expected trust, restart or ignore, got '" + value + "'");
    }
  }
}

}  // namespace

CliOptions parseArgs(int argc, const char* const* argv) {
  CliOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string flag = arg;
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (isSwitch(flag)) {
      if (value) {
        throw ConfigError(flag + ": takes no value");
      }
      if (flag == "--validate") {
        o.validate_only = true;
      } else if (flag == "--version") {
        o.show_version = true;
      } else {
        o.show_help = true;
      }
      continue;
    }
    if (!takesValue(flag)) {
      if (flag.rfind("-", 0) == 0) {
        throw ConfigError(flag + ": unknown flag (see --help)");
      }
      throw ConfigError("unexpected argument '" + arg + "' (see --help)");
    }
    if (!value) {
      value = detail::nextFlagValue(argc, argv, i, flag);
    }
    setValue(o, flag, *value);
  }
  return o;
}

std::string usage() {
  return R"(Usage:
  sidetrace --config FILE                 run from a YAML config
  sidetrace --listen ADDR --upstream HOST:PORT [options]
                                          zero-config sidecar
  sidetrace --validate --config FILE      check a config, print problems, exit 0/1
  sidetrace inject [-f FILE | -] [options]
                                          add the sidecar to Kubernetes YAML (inject --help)
  sidetrace --version | --help

Options (each overrides the config file):
  --config FILE          YAML config file (${VAR} and ${VAR:-default} are substituted)
  --validate             load and validate the config, then exit (0 ok, 1 bad)
  --listen ADDR          listen address, host:port, [v6]:port or :port
  --upstream HOST:PORT   the application to forward to
  --service-name NAME    tracing service name (resource service.name)
  --otlp-endpoint URL    export spans with OTLP/gRPC to URL, e.g. http://localhost:4317, or
                         to a collector's Unix socket, unix:/run/otel/otlp.sock; console:
                         spans as JSON lines on stdout
  --admin ADDR|off       admin listener address (default 127.0.0.1:9901); off or none disables it
  --workers N            worker threads (0 = one per core)
  --ignore-path PATH     never trace requests whose path starts with PATH (repeatable)
  --trace-context MODE   what every listener makes of its callers' trace context: trust
                         (default), restart (new trace, linked to the caller's) or ignore
  --egress ADDR          serve the app's outbound HTTP on ADDR (point the app's HTTP_PROXY at
                         it, or redirect its connections there with k8s/egress-iptables.sh;
                         use loopback, e.g. 127.0.0.1:15002)
  --log-level LEVEL      trace | debug | info | warn | error | off
  --log-format FORMAT    json (default: one JSON object per line) | text
  --ports-file PATH      once listening, write "listener ADDR NAME" per listener and
                         "admin ADDR" to PATH (tells which port a configured :0 got)
  --version              print the version and the allocator in use, and exit
  -h, --help             print this help and exit

Flags accept "--flag value" and "--flag=value". OTEL_* environment variables (OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...) apply below the config file and flags.
)";
}

}  // namespace sidetrace::config
