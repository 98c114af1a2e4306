// `sidetrace inject --egress / --transparent`: how the app's outbound HTTP reaches sidetrace's
// egress listener.

#include <set>
#include <string>

#include "config/checks.h"
#include "config/inject_pod.h"
#include "config/load.h"
#include "config/url.h"
#include "config/yaml_stream.h"

namespace sidetrace::config::detail {

namespace {

constexpr const char* kRedirectName = "sidetrace-iptables";
// Where the Dockerfile installs k8s/egress-iptables.sh.
constexpr const char* kRedirectScript = "/usr/local/bin/egress-iptables.sh";
// Loopback stays direct: the pod's own ports, and the egress listener itself. Calls to other
// Services are not excluded (no .svc, .cluster.local): they are the hops to trace.
constexpr const char* kNoProxy = "localhost,127.0.0.1,::1";

YAML::Node sequenceOf(const YAML::Node& n) {
  return n.IsSequence() ? n : YAML::Node(YAML::NodeType::Sequence);
}

YAML::Node env(const std::string& name, const std::string& value) {
  YAML::Node e(YAML::NodeType::Map);
  e["name"] = yamlString(name);
  e["value"] = yamlString(value);
  return e;
}

YAML::Node flowList(std::initializer_list<const char*> items) {
  YAML::Node list(YAML::NodeType::Sequence);
  for (const char* i : items) {
    list.push_back(yamlString(i));
  }
  list.SetStyle(YAML::EmitterStyle::Flow);
  return list;
}

// Root with NET_ADMIN only (the nft-backed iptables needs no more), nothing else; the script
// writes nothing, so the root filesystem stays read-only.
YAML::Node redirectSecurityContext() {
  YAML::Node caps(YAML::NodeType::Map);
  caps["add"] = flowList({"NET_ADMIN"});
  caps["drop"] = flowList({"ALL"});
  return lockedDownSecurityContext(0, 0, caps);
}

// DNS over TCP and the OTLP ports, as the script's default, plus the collector's port if another.
std::string excludedPorts(const InjectOptions& options) {
  std::set<int> ports{53, 4317, 4318};
  if (options.otlp_endpoint != "console") {
    try {
      ports.insert(parseHttpUrl(options.otlp_endpoint).port);
    } catch (const ConfigError&) {  // checked with the flag; the defaults still hold
    }
  }
  std::string out;
  for (int p : ports) {
    if (!out.empty()) {
      out += ',';
    }
    out += std::to_string(p);
  }
  return out;
}

}  // namespace

void addProxyEnv(YAML::Node spec, int egress_port) {
  const std::string proxy = "http://127.0.0.1:" + std::to_string(egress_port);
  const std::pair<const char*, std::string> vars[] = {
      {"HTTP_PROXY", proxy}, {"HTTPS_PROXY", proxy}, {"NO_PROXY", kNoProxy}};
  for (YAML::Node c : sequenceOf(childOf(spec, "containers"))) {
    if (scalarOf(childOf(c, "name")) == "sidetrace") {
      continue;
    }
    bool own_proxy = false;  // a container with a proxy set up of its own keeps it, whole
    for (const auto& e : sequenceOf(childOf(c, "env"))) {
      const std::string name = toLower(scalarOf(childOf(e, "name")));
      own_proxy = own_proxy || name == "http_proxy" || name == "https_proxy" || name == "no_proxy";
    }
    if (own_proxy) {
      continue;
    }
    YAML::Node list = childOf(c, "env");
    if (!list.IsSequence()) {
      list = YAML::Node(YAML::NodeType::Sequence);
    }
    for (const auto& [upper, value] : vars) {  // both spellings: clients differ in which they read
      list.push_back(env(upper, value));
      list.push_back(env(toLower(upper), value));
    }
    c["env"] = list;
  }
}

void addRedirectInit(YAML::Node spec, const SidecarPlan& plan, const InjectOptions& options) {
  YAML::Node c(YAML::NodeType::Map);
  c["name"] = yamlString(kRedirectName);
  c["image"] = yamlString(options.image);
  c["imagePullPolicy"] = yamlString("IfNotPresent");
  YAML::Node command(YAML::NodeType::Sequence);
  command.push_back(yamlString(kRedirectScript));
  c["command"] = command;
  YAML::Node args(YAML::NodeType::Sequence);
  args.push_back(yamlString("--egress-port=" + std::to_string(plan.egress_port)));
  args.push_back(yamlString("--uid=" + std::to_string(kSidecarUid)));
  if (options.process_rule == InjectOptions::ProcessRule::kPtrace) {
    // The sidecar runs as root (--process-rule=ptrace; uid with --transparent is refused): its
    // group is what tells its connections from the app's.
    args.push_back(yamlString("--gid=" + std::to_string(plan.gid)));
  }
  args.push_back(yamlString("--ports=" + options.redirect_ports));
  args.push_back(yamlString("--exclude-ports=" + excludedPorts(options)));
  c["args"] = args;
  YAML::Node requests(YAML::NodeType::Map);
  requests["cpu"] = yamlString("10m");
  requests["memory"] = yamlString("16Mi");
  requests.SetStyle(YAML::EmitterStyle::Flow);
  YAML::Node limits(YAML::NodeType::Map);
  limits["memory"] = yamlString("64Mi");
  limits.SetStyle(YAML::EmitterStyle::Flow);
  c["resources"]["requests"] = requests;
  c["resources"]["limits"] = limits;
  c["securityContext"] = redirectSecurityContext();

  YAML::Node init = childOf(spec, "initContainers");
  YAML::Node list(YAML::NodeType::Sequence);
  for (const auto& existing : sequenceOf(init)) {
    if (scalarOf(childOf(existing, "name")) != kRedirectName) {
      list.push_back(existing);
    }
  }
  list.push_back(c);
  spec["initContainers"] = list;
}

}  // namespace sidetrace::config::detail
