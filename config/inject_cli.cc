// The `sidetrace inject` command line: flags, help, and the I/O around injectSidecars. Every bad
// value is refused here, naming the flag, before any input is read.

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

#include <re2/re2.h>

#include "config/checks.h"
#include "config/inject.h"
#include "config/inject_pod.h"
#include "config/load.h"
#include "config/url.h"

namespace sidetrace::config {

namespace {

bool takesValue(std::string_view flag) {
  return flag == "-f" || flag == "--filename" || flag == "--image" || flag == "--service-name" ||
         flag == "--otlp-endpoint" || flag == "--otlp-protocol" || flag == "--sampler" ||
         flag == "--sampler-arg" || flag == "--ignore-path" || flag == "--port" ||
         flag == "--proxy-port" || flag == "--admin-port" || flag == "--workers" ||
         flag == "--requests" || flag == "--limits" || flag == "--egress-port" ||
         flag == "--redirect-ports" || flag == "--process-rule" || flag == "--process-rule-user";
}

// Kubernetes port names are IANA service names: 1-15 of [a-z0-9-], a letter among them, no
// hyphen at either end or twice in a row.
bool isPortName(const std::string& s) {
  if (s.empty()) {
    return false;
  }
  static const re2::RE2 re("[a-z0-9][a-z0-9-]*");
  return s.size() <= 15 && s.back() != '-' && s.find("--") == std::string::npos &&
         re2::RE2::FullMatch(s, re) &&
         s.find_first_of("abcdefghijklmnopqrstuvwxyz") != std::string::npos;
}

uint16_t parsePort(const std::string& flag, const std::string& value) {
  int n = detail::portNumberOfText(value);
  if (n == 0) {
    throw ConfigError(flag + ": expected a port number 1-65535, got '" + value + "'");
  }
  return static_cast<uint16_t>(n);
}

// "cpu=100m,memory=64Mi" as kubectl's --requests/--limits take it; "" for none.
std::vector<std::pair<std::string, std::string>> parseQuantities(const std::string& flag,
                                                                 const std::string& value) {
  // RE2, not std::regex: GCC 12's <regex> trips -Wmaybe-uninitialized under ASan
  // (DEPENDENCIES.md).
  static const re2::RE2 resource("[a-z0-9]([a-z0-9.\\-/]*[a-z0-9])?");
  static const re2::RE2 quantity(
      "[+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?");
  std::vector<std::pair<std::string, std::string>> out;
  if (value.empty()) {
    return out;
  }
  for (const std::string& item : detail::split(value, ',')) {
    size_t eq = item.find('=');
    std::string name = item.substr(0, eq);
    std::string q = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (!re2::RE2::FullMatch(name, resource) || !re2::RE2::FullMatch(q, quantity)) {
      throw ConfigError(flag +
                        ": expected RESOURCE=QUANTITY[,...] such as cpu=100m,memory=64Mi, got '" +
                        item + "'");
    }
    out.emplace_back(name, q);
  }
  return out;
}

// What k8s/egress-iptables.sh --ports takes: "all", or up to 15 ports (iptables multiport).
std::string parseRedirectPorts(const std::string& flag, const std::string& value) {
  if (value == "all") {
    return value;
  }
  const auto items = detail::split(value, ',');
  if (items.size() > 15) {
    throw ConfigError(flag + ": at most 15 ports (iptables multiport), or all");
  }
  for (const std::string& item : items) {
    if (detail::portNumberOfText(item) == 0) {
      throw ConfigError(flag + ": expected ports such as 80,8080 or all, got '" + value + "'");
    }
  }
  return value;
}

// "UID:GID", each a plain integer 0..2^31-1.
std::pair<int, int> parseUser(const std::string& flag, const std::string& value) {
  static const re2::RE2 re("([0-9]{1,10}):([0-9]{1,10})");
  std::string uid;
  std::string gid;
  if (!re2::RE2::FullMatch(value, re, &uid, &gid) || std::stoll(uid) > 2147483647 ||
      std::stoll(gid) > 2147483647) {
    throw ConfigError(flag + ": expected UID:GID such as 1000:1000, got '" + value + "'");
  }
  return {static_cast<int>(std::stoll(uid)), static_cast<int>(std::stoll(gid))};
}

void setValue(InjectOptions& o, const std::string& flag, const std::string& value) {
  auto nonEmpty = [&]() {
    if (value.empty()) {
      throw ConfigError(flag + ": empty value");
    }
    return value;
  };
  if (flag == "-f" || flag == "--filename") {
    o.input_path = nonEmpty();
  } else if (flag == "--image") {
    if (nonEmpty().find_first_of(" \t\n") != std::string::npos) {
      throw ConfigError(flag + ": an image reference has no blanks, got '" + value + "'");
    }
    o.image = value;
  } else if (flag == "--service-name") {
    o.service_name = nonEmpty();
  } else if (flag == "--otlp-endpoint") {
    if (value != "console") {
      try {
        parseHttpUrl(nonEmpty());
      } catch (const ConfigError& e) {
        throw ConfigError(flag + ": " + e.what());
      }
    }
    o.otlp_endpoint = value;
  } else if (flag == "--otlp-protocol") {
    if (value != "grpc" && value != "http/protobuf" && value != "http/json") {
      throw ConfigError(flag + ": expected grpc, http/protobuf or http/json, got '" + value + "'");
    }
    o.otlp_protocol = value;
  } else if (flag == "--sampler") {
    if (std::string err = detail::checkSamplerType(value); !err.empty()) {
      throw ConfigError(flag + ": " + err);
    }
    o.sampler = value;
  } else if (flag == "--sampler-arg") {
    auto ratio = detail::parseDouble(value);
    if (!ratio || *ratio < 0 || *ratio > 1) {
      throw ConfigError(flag + ": expected a sampling ratio between 0 and 1, got '" + value + "'");
    }
    o.sampler_arg = value;
  } else if (flag == "--ignore-path") {
    if (value.empty() || value[0] != '/') {
      throw ConfigError(flag + ": path must start with '/', got '" + value + "'");
    }
    o.ignore_paths.push_back(value);
  } else if (flag == "--port") {
    if (detail::portNumberOfText(value) == 0 && !isPortName(value)) {
      throw ConfigError(flag + ": expected a port number or a port name, got '" + value + "'");
    }
    o.port = value;
  } else if (flag == "--proxy-port") {
    o.proxy_port = parsePort(flag, value);
  } else if (flag == "--admin-port") {
    o.admin_port = parsePort(flag, value);
  } else if (flag == "--workers") {
    auto n = detail::parseUint32(value);
    if (!n) {
      throw ConfigError(flag + ": expected a non-negative integer, got '" + value + "'");
    }
    o.workers = *n;
  } else if (flag == "--egress-port") {
    o.egress_port = parsePort(flag, value);
  } else if (flag == "--redirect-ports") {
    o.redirect_ports = parseRedirectPorts(flag, value);
  } else if (flag == "--process-rule") {
    if (value != "uid" && value != "ptrace") {
      throw ConfigError(flag + ": expected uid or ptrace, got '" + value + "'");
    }
    o.process_rule =
        value == "uid" ? InjectOptions::ProcessRule::kUid : InjectOptions::ProcessRule::kPtrace;
  } else if (flag == "--process-rule-user") {
    o.process_rule_user = parseUser(flag, value);
  } else if (flag == "--requests") {
    o.requests = parseQuantities(flag, value);
  } else if (flag == "--limits") {
    o.limits = parseQuantities(flag, value);
  }
}

// The combinations --process-rule refuses, each with what to do instead.
void checkProcessRule(const InjectOptions& o) {
  using PR = InjectOptions::ProcessRule;
  if (o.process_rule_user && o.process_rule != PR::kUid) {
    throw ConfigError("--process-rule-user: only with --process-rule=uid");
  }
  if (o.process_rule == PR::kOff) {
    return;
  }
  if (!o.egress && !o.transparent) {
    throw ConfigError(
        "--process-rule: only with --egress or --transparent (the rule infers the parents of "
        "the app's outbound calls, which go through the egress listener)");
  }
  if (o.process_rule == PR::kUid && o.transparent) {
    throw ConfigError(
        "--process-rule=uid: not with --transparent (the redirect tells sidetrace's own "
        "connections from the app's by their user, and they would share it); use "
        "--process-rule=ptrace");
  }
}

}  // namespace

InjectOptions parseInjectArgs(int argc, const char* const* argv) {
  InjectOptions o;
  bool redirect_ports = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string flag = arg;
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    if (bool* on = flag == "--native-sidecar"         ? &o.native_sidecar
                   : flag == "--egress"               ? &o.egress
                   : flag == "--transparent"          ? &o.transparent
                   : flag == "--help" || flag == "-h" ? &o.show_help
                                                      : nullptr) {
      if (value) {
        throw ConfigError(flag + ": takes no value");
      }
      *on = true;
      continue;
    }
    if (arg == "-") {
      o.input_path = "-";
      continue;
    }
    if (!takesValue(flag)) {
      if (flag.rfind("-", 0) == 0) {
        throw ConfigError(flag + ": unknown flag (see sidetrace inject --help)");
      }
      throw ConfigError("unexpected argument '" + arg + "' (read a file with -f FILE)");
    }
    if (!value) {
      value = detail::nextFlagValue(argc, argv, i, flag);
    }
    setValue(o, flag, *value);
    redirect_ports = redirect_ports || flag == "--redirect-ports";
  }
  if (o.proxy_port == o.admin_port) {
    throw ConfigError("--admin-port: must differ from --proxy-port (" +
                      std::to_string(o.proxy_port) + ")");
  }
  if (redirect_ports && !o.transparent) {
    throw ConfigError("--redirect-ports: only with --transparent (the ports iptables redirects)");
  }
  checkProcessRule(o);
  if ((o.egress || o.transparent) &&
      (o.egress_port == o.proxy_port || o.egress_port == o.admin_port)) {
    throw ConfigError("--egress-port: must differ from --proxy-port and --admin-port (" +
                      std::to_string(o.egress_port) + ")");
  }
  return o;
}

std::string injectUsage() {
  return R"(Usage:
  sidetrace inject [-f FILE | -] [options]    add the sidetrace sidecar to Kubernetes YAML

Reads Kubernetes YAML (several documents) and writes it to stdout with a container named
sidetrace in the pods of every Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and
Pod, in front of one app port; the Services in the input that select the workload are pointed at
it. Other documents are copied unchanged. A pod with a sidetrace container is left as it is.
What was done goes to stderr.

  sidetrace inject -f app.yaml | kubectl apply -f -

Options:
  -f, --filename FILE|-  the input (default: stdin)
  --image IMAGE          the sidecar's image (default )" +
         std::string(kInjectDefaultImage) + R"(, pulled if not present)
  --service-name NAME    service.name of the spans (default: the workload's
                         app.kubernetes.io/name label, else its name)
  --otlp-endpoint URL    the collector (default )" +
         std::string(kInjectDefaultOtlpEndpoint) + R"();
                         console: spans on the sidecar's log instead
  --otlp-protocol P      grpc (default) | http/protobuf | http/json
  --sampler TYPE         OTEL_TRACES_SAMPLER, e.g. parentbased_traceidratio
  --sampler-arg RATIO    OTEL_TRACES_SAMPLER_ARG, e.g. 0.1
  --ignore-path PATH     proxy requests under PATH untraced (repeatable)
  --port NAME|NUMBER     the app port to front (default: the first one a Service of the
                         input sends to, else the first container port)
  --proxy-port N         sidetrace's listener (default 15001; the next free one if taken)
  --admin-port N         readiness and metrics, not in any Service (default 9901)
  --workers N            sidetrace's worker threads (default 2)
  --requests LIST        the sidecar's resource requests (default cpu=100m,memory=64Mi; "" none)
  --limits LIST          its resource limits (default memory=256Mi; "" for none)
  --native-sidecar       run it as a native sidecar (init container with restartPolicy
                         Always, Kubernetes >= 1.29) everywhere; by default only in Jobs,
                         CronJobs and Pods that do not restart, which must still complete
  --egress               send the app's outbound HTTP through sidetrace's egress listener
                         (forward proxy): HTTP_PROXY, HTTPS_PROXY and NO_PROXY (both
                         spellings) in the app containers, unless they set them already
  --transparent          capture it with iptables instead: an init container (root,
                         NET_ADMIN) redirects the app's outbound TCP to --redirect-ports to
                         the egress listener; sidetrace's uid 65532 is excluded
  --egress-port N        the egress listener, on 127.0.0.1 (default 15002)
  --redirect-ports LIST  with --transparent: ports such as 80,8080, or all (default 80)
  --process-rule MODE    let the egress process rule see the app's sockets
                         (shareProcessNamespace, README "Egress"): uid = the sidecar runs
                         as the app container's runAsUser/runAsGroup (not with
                         --transparent); ptrace = as root with SYS_PTRACE and
                         DAC_READ_SEARCH only, which can read the app's memory
  --process-rule-user UID:GID  with --process-rule=uid: the app's user, when its
                         securityContext does not say (the image's USER)
  -h, --help             print this help and exit
)";
}

int runInject(int argc, const char* const* argv) {
  InjectOptions o;
  try {
    o = parseInjectArgs(argc, argv);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "sidetrace inject: %s\n\n%s", e.what(), injectUsage().c_str());
    return 1;
  }
  if (o.show_help) {
    std::fputs(injectUsage().c_str(), stdout);
    return 0;
  }
  bool from_stdin = o.input_path == "-";
  std::FILE* in = from_stdin ? stdin : std::fopen(o.input_path.c_str(), "rb");
  if (in == nullptr) {
    std::fprintf(stderr, "sidetrace inject: -f: cannot read %s: %s\n", o.input_path.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) {
    text.append(buf, n);
  }
  bool read_failed = std::ferror(in) != 0;
  int read_errno = errno;
  if (!from_stdin) {
    std::fclose(in);
  }
  std::string source = from_stdin ? "<stdin>" : o.input_path;
  if (read_failed) {
    std::fprintf(stderr, "sidetrace inject: cannot read %s: %s\n", source.c_str(),
                 std::strerror(read_errno));
    return 1;
  }
  InjectResult r;
  try {
    r = injectSidecars(text, source, o);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "sidetrace inject: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // a yaml-cpp surprise: still one line and exit 1
    std::fprintf(stderr, "sidetrace inject: %s: %s\n", source.c_str(), e.what());
    return 1;
  }
  for (const std::string& note : r.notes) {
    std::fprintf(stderr, "sidetrace inject: %s\n", note.c_str());
  }
  if (std::fwrite(r.output.data(), 1, r.output.size(), stdout) != r.output.size() ||
      std::fflush(stdout) != 0) {
    std::fprintf(stderr, "sidetrace inject: cannot write the output: %s\n", std::strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace sidetrace::config
