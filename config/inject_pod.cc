// Putting sidetrace in front of one app port of a pod template.

#include "config/inject_pod.h"

#include <set>
#include <string_view>
#include <tuple>

#include "config/checks.h"
#include "config/load.h"
#include "config/yaml_stream.h"

namespace sidetrace::config::detail {

namespace {

constexpr const char* kContainerName = "sidetrace";
constexpr const char* kAdminPortName = "sidetrace-admin";  // IANA service names: <= 15 chars
constexpr const char* kNameLabel = "app.kubernetes.io/name";
constexpr const char* kVersionLabel = "app.kubernetes.io/version";
struct ContainerPort {
  int number = 0;
  std::string name;
  YAML::Node entry;      // the item of the container's ports list
  YAML::Node container;  // owning container
};

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

YAML::Node sequenceOf(const YAML::Node& n) {
  return n.IsSequence() ? n : YAML::Node(YAML::NodeType::Sequence);
}

bool hasSidetraceContainer(const YAML::Node& spec) {
  for (const char* list : {"containers", "initContainers"}) {
    for (const auto& c : sequenceOf(childOf(spec, list))) {
      if (scalarOf(childOf(c, "name")) == kContainerName) {
        return true;
      }
    }
  }
  return false;
}

// The port in "HOST:PORT", 0 if none.
int portOfAddress(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return 0;
  }
  return portNumberOfText(address.substr(colon + 1));
}

// An earlier injection's --listen and --upstream, so that a Service added since, sending to the
// app's port by number, is still pointed at sidetrace.
void readInjectedPorts(const YAML::Node& spec, SidecarPlan& plan) {
  for (const char* list : {"containers", "initContainers"}) {
    for (const auto& c : sequenceOf(childOf(spec, list))) {
      if (scalarOf(childOf(c, "name")) != kContainerName) {
        continue;
      }
      std::string previous;
      for (const auto& a : sequenceOf(childOf(c, "args"))) {
        std::string arg = scalarOf(a);
        for (const char* flag : {"--listen", "--upstream"}) {
          std::string with_eq = std::string(flag) + "=";
          int port = startsWith(arg, with_eq) ? portOfAddress(arg.substr(with_eq.size()))
                     : previous == flag       ? portOfAddress(arg)
                                              : 0;
          if (port != 0) {
            (std::string_view(flag) == "--listen" ? plan.proxy_port : plan.app_port) = port;
          }
        }
        previous = arg;
      }
    }
  }
}

// TCP ports the app containers declare (init containers serve nothing the Services see, native
// sidecars of other meshes aside).
std::vector<ContainerPort> declaredPorts(const YAML::Node& spec) {
  std::vector<ContainerPort> ports;
  for (const auto& c : sequenceOf(childOf(spec, "containers"))) {
    for (const auto& p : sequenceOf(childOf(c, "ports"))) {
      std::string protocol = scalarOf(childOf(p, "protocol"));
      int number = portNumberOf(childOf(p, "containerPort"));
      if (number != 0 && (protocol.empty() || protocol == "TCP")) {
        ports.push_back({number, scalarOf(childOf(p, "name")), p, c});
      }
    }
  }
  return ports;
}

std::set<int> portsInUse(const YAML::Node& spec) {
  std::set<int> used;
  for (const char* list : {"containers", "initContainers"}) {
    for (const auto& c : sequenceOf(childOf(spec, list))) {
      for (const auto& p : sequenceOf(childOf(c, "ports"))) {
        used.insert(portNumberOf(childOf(p, "containerPort")));
      }
    }
  }
  return used;
}

int freePort(int wanted, std::set<int>& used) {
  while (used.count(wanted) != 0 && wanted < 65535) {
    ++wanted;
  }
  used.insert(wanted);
  return wanted;
}

// The port a Service target or --port names, among the declared ones; a number nobody declares
// is still the app's port (declaring container ports is optional in Kubernetes).
std::optional<ContainerPort> resolve(const std::vector<ContainerPort>& declared, int number,
                                     const std::string& name) {
  for (const auto& p : declared) {
    if ((number != 0 && p.number == number) || (number == 0 && !name.empty() && p.name == name)) {
      return p;
    }
  }
  if (number != 0) {
    return ContainerPort{number, "", {}, {}};
  }
  return std::nullopt;
}

std::optional<ContainerPort> choosePort(const PodTemplate& pod,
                                        const std::vector<ContainerPort>& declared,
                                        const std::vector<PortTarget>& targets,
                                        const InjectOptions& options,
                                        std::vector<std::string>& notes) {
  const std::string who = pod.kind + "/" + pod.name;
  if (options.port) {
    int number = portNumberOfText(*options.port);
    auto p = resolve(declared, number, number == 0 ? *options.port : "");
    if (!p) {
      notes.push_back(who + ": no container port named '" + *options.port + "', left as it is");
    }
    return p;
  }
  for (const auto& t : targets) {
    if (auto p = resolve(declared, t.number, t.name)) {
      return p;
    }
  }
  if (!declared.empty()) {
    return declared.front();
  }
  notes.push_back(who +
                  ": no container port for sidetrace to front, left as it is (name one "
                  "with --port)");
  return std::nullopt;
}

// Probes and lifecycle hooks name ports of their own container: once the app's port has lost its
// name to sidetrace's, they must give its number.
void renamePortReferences(YAML::Node container, const std::string& name, int number) {
  auto fix = [&](const YAML::Node& handler) {
    for (const char* kind : {"httpGet", "tcpSocket"}) {
      YAML::Node action = childOf(handler, kind);
      if (action.IsMap() && scalarOf(childOf(action, "port")) == name) {
        action["port"] = yamlInt(number);
      }
    }
  };
  for (const char* probe : {"livenessProbe", "readinessProbe", "startupProbe"}) {
    fix(childOf(container, probe));
  }
  YAML::Node lifecycle = childOf(container, "lifecycle");
  for (const char* hook : {"postStart", "preStop"}) {
    fix(childOf(lifecycle, hook));
  }
}

std::string workloadAttribute(const std::string& kind) {
  if (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" ||
      kind == "ReplicaSet" || kind == "Job" || kind == "CronJob") {
    return "k8s." + toLower(kind) + ".name";
  }
  return "";
}

YAML::Node fieldRefEnv(const std::string& name, const std::string& field_path) {
  YAML::Node ref(YAML::NodeType::Map);
  ref["fieldPath"] = yamlString(field_path);
  ref.SetStyle(YAML::EmitterStyle::Flow);
  YAML::Node e(YAML::NodeType::Map);
  e["name"] = yamlString(name);
  e["valueFrom"]["fieldRef"] = ref;
  return e;
}

YAML::Node valueEnv(const std::string& name, const std::string& value) {
  YAML::Node e(YAML::NodeType::Map);
  e["name"] = yamlString(name);
  e["value"] = yamlString(value);
  return e;
}

// Resource attributes from the downward API, as the OpenTelemetry Kubernetes conventions name
// them; the exporter and sampler as OTEL_* variables (README "Environment variables").
YAML::Node sidecarEnv(const PodTemplate& pod, const InjectOptions& options) {
  YAML::Node env(YAML::NodeType::Sequence);
  env.push_back(fieldRefEnv("K8S_POD_NAME", "metadata.name"));
  env.push_back(fieldRefEnv("K8S_POD_UID", "metadata.uid"));
  env.push_back(fieldRefEnv("K8S_NAMESPACE", "metadata.namespace"));
  env.push_back(fieldRefEnv("K8S_NODE_NAME", "spec.nodeName"));
  std::string attributes =
      "k8s.pod.name=$(K8S_POD_NAME),k8s.pod.uid=$(K8S_POD_UID),"
      "k8s.namespace.name=$(K8S_NAMESPACE),k8s.node.name=$(K8S_NODE_NAME)";
  if (std::string key = workloadAttribute(pod.kind); !key.empty() && !pod.name.empty()) {
    attributes += "," + key + "=" + pod.name;
  }
  if (childOf(pod.labels, kVersionLabel).IsScalar()) {
    env.push_back(
        fieldRefEnv("SERVICE_VERSION", std::string("metadata.labels['") + kVersionLabel + "']"));
    attributes += ",service.version=$(SERVICE_VERSION)";
  }
  env.push_back(valueEnv("OTEL_RESOURCE_ATTRIBUTES", attributes));
  if (options.otlp_endpoint == "console") {
    env.push_back(valueEnv("OTEL_TRACES_EXPORTER", "console"));
  } else {
    env.push_back(valueEnv("OTEL_EXPORTER_OTLP_ENDPOINT", options.otlp_endpoint));
    if (options.otlp_protocol) {
      env.push_back(valueEnv("OTEL_EXPORTER_OTLP_PROTOCOL", *options.otlp_protocol));
    }
    // The span flush after the drain, bounded even with the collector down: the drain (15 s at
    // most) and 5 s fit the pod's default 30 s grace period, where OTel's 30 s default would not.
    env.push_back(valueEnv("OTEL_BSP_EXPORT_TIMEOUT", "5000"));
  }
  if (options.sampler) {
    env.push_back(valueEnv("OTEL_TRACES_SAMPLER", *options.sampler));
  }
  if (options.sampler_arg) {
    env.push_back(valueEnv("OTEL_TRACES_SAMPLER_ARG", *options.sampler_arg));
  }
  return env;
}

YAML::Node containerPort(const std::string& name, int number) {
  YAML::Node p(YAML::NodeType::Map);
  if (!name.empty()) {
    p["name"] = yamlString(name);
  }
  p["containerPort"] = yamlInt(number);
  return p;
}

YAML::Node resourceMap(const std::vector<std::pair<std::string, std::string>>& quantities) {
  YAML::Node m(YAML::NodeType::Map);
  for (const auto& [resource, quantity] : quantities) {
    m[resource] = yamlString(quantity);
  }
  m.SetStyle(YAML::EmitterStyle::Flow);
  return m;
}

// --process-rule=ptrace: root, so that the added capabilities take effect (Kubernetes gives a
// non-root container none: no ambient capabilities), with the two the /proc/PID/fd reads need —
// DAC_READ_SEARCH to list the directory (mode 0500, the app's uid), SYS_PTRACE for the ptrace read
// check on its links — and nothing else.
YAML::Node securityContext(const SidecarPlan& plan, const InjectOptions& options) {
  YAML::Node drop(YAML::NodeType::Sequence);
  drop.push_back(yamlString("ALL"));
  drop.SetStyle(YAML::EmitterStyle::Flow);
  YAML::Node caps(YAML::NodeType::Map);
  if (options.process_rule == InjectOptions::ProcessRule::kPtrace) {
    YAML::Node add(YAML::NodeType::Sequence);
    add.push_back(yamlString("SYS_PTRACE"));
    add.push_back(yamlString("DAC_READ_SEARCH"));
    add.SetStyle(YAML::EmitterStyle::Flow);
    caps["add"] = add;
  } else {
    caps.SetStyle(YAML::EmitterStyle::Flow);
  }
  caps["drop"] = drop;
  return lockedDownSecurityContext(plan.uid, plan.gid, caps);
}

// A plain integer 0..2^31-1 (runAsUser, runAsGroup), else -1.
int idOf(const YAML::Node& n) {
  const std::string s = n.IsDefined() && n.IsScalar() && n.Tag() == "?" ? n.Scalar() : "";
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) {
    return -1;
  }
  const long long v = std::stoll(s);
  return v <= 2147483647 ? static_cast<int>(v) : -1;
}

// The uid and gid of the app container's processes, for --process-rule=uid: the kernel lets a
// process read another's /proc/PID/fd links when uid *and* gid match (ptrace read check). From
// the container's securityContext, else the pod's; the image's USER is not visible here, so
// without them the user must say (--process-rule-user).
std::pair<int, int> appUser(const PodTemplate& pod, const YAML::Node& app_container,
                            const InjectOptions& options) {
  if (options.process_rule_user) {
    return *options.process_rule_user;
  }
  const std::string who = pod.kind + "/" + pod.name + ": --process-rule=uid: ";
  YAML::Node container = app_container;
  if (!container.IsDefined()) {  // the app port is not declared: one app container, or say so
    YAML::Node all = sequenceOf(childOf(pod.spec, "containers"));
    if (all.size() != 1) {
      throw ConfigError(who +
                        "cannot tell which container serves the app port (none declares it); "
                        "give the app's user with --process-rule-user=UID:GID");
    }
    container.reset(all[0]);
  }
  const YAML::Node own = childOf(container, "securityContext");
  const YAML::Node shared = childOf(pod.spec, "securityContext");
  auto id = [&](const char* key) {
    int v = idOf(childOf(own, key));
    return v >= 0 ? v : idOf(childOf(shared, key));
  };
  const int uid = id("runAsUser");
  const int gid = id("runAsGroup");
  if (uid < 0 || gid < 0) {
    throw ConfigError(who + "container '" + scalarOf(childOf(container, "name")) + "' has no " +
                      (uid < 0 ? "runAsUser" : "runAsGroup") +
                      " in its or the pod's securityContext (the image's user is not visible "
                      "here); give the app's user with --process-rule-user=UID:GID, or use "
                      "--process-rule=ptrace");
  }
  return {uid, gid};
}

YAML::Node sidecarContainer(const PodTemplate& pod, const SidecarPlan& plan,
                            const InjectOptions& options, bool native) {
  YAML::Node c(YAML::NodeType::Map);
  c["name"] = yamlString(kContainerName);
  c["image"] = yamlString(options.image);
  c["imagePullPolicy"] = yamlString("IfNotPresent");
  if (native) {
    c["restartPolicy"] = yamlString("Always");  // a native sidecar: stopped once the app ends
  }
  YAML::Node args(YAML::NodeType::Sequence);
  args.push_back(yamlString("--listen=0.0.0.0:" + std::to_string(plan.proxy_port)));
  args.push_back(yamlString("--upstream=127.0.0.1:" + std::to_string(plan.app_port)));
  if (plan.egress_port != 0) {  // loopback: only the pod's containers may send through it
    args.push_back(yamlString("--egress=127.0.0.1:" + std::to_string(plan.egress_port)));
  }
  // On all addresses for kubelet's probe and Prometheus; /reload and /config_dump answer only
  // on the pod's loopback. No Service sends to it.
  args.push_back(yamlString("--admin=0.0.0.0:" + std::to_string(plan.admin_port)));
  args.push_back(yamlString("--service-name=" + options.service_name.value_or(pod.service_name)));
  args.push_back(yamlString("--workers=" + std::to_string(options.workers)));
  for (const auto& path : options.ignore_paths) {
    args.push_back(yamlString("--ignore-path=" + path));
  }
  c["args"] = args;
  c["env"] = sidecarEnv(pod, options);
  YAML::Node ports(YAML::NodeType::Sequence);
  ports.push_back(containerPort(plan.app_port_name, plan.proxy_port));
  ports.push_back(containerPort(kAdminPortName, plan.admin_port));
  c["ports"] = ports;
  YAML::Node get(YAML::NodeType::Map);
  get["path"] = yamlString("/ready");  // 503 while draining: out of the endpoints at once
  get["port"] = yamlString(kAdminPortName);
  get.SetStyle(YAML::EmitterStyle::Flow);
  c["readinessProbe"]["httpGet"] = get;
  c["readinessProbe"]["periodSeconds"] = yamlInt(2);
  if (!options.requests.empty() || !options.limits.empty()) {
    YAML::Node resources(YAML::NodeType::Map);
    if (!options.requests.empty()) {
      resources["requests"] = resourceMap(options.requests);
    }
    if (!options.limits.empty()) {
      resources["limits"] = resourceMap(options.limits);
    }
    c["resources"] = resources;
  }
  c["securityContext"] = securityContext(plan, options);
  return c;
}

}  // namespace

YAML::Node childOf(const YAML::Node& map, const char* key) {
  // A missing key gives yaml-cpp's "zombie" node, which throws on any question but
  // IsDefined(): an undefined node answers them all (no map, no scalar).
  if (!map.IsDefined() || !map.IsMap()) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
  const YAML::Node& m = map;  // const operator[] never inserts the key
  YAML::Node child = m[key];
  return child.IsDefined() ? child : YAML::Node(YAML::NodeType::Undefined);
}

std::string scalarOf(const YAML::Node& n) {
  return n.IsDefined() && n.IsScalar() ? n.Scalar() : "";
}

int portNumberOf(const YAML::Node& n) {
  return n.IsDefined() && n.IsScalar() && n.Tag() == "?" ? portNumberOfText(n.Scalar()) : 0;
}

int portNumberOfText(const std::string& text) {
  if (text.empty() || text.size() > 5) {
    return 0;
  }
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return 0;
    }
    v = v * 10 + (c - '0');
  }
  return v >= 1 && v <= 65535 ? v : 0;
}

std::optional<PodTemplate> findPodTemplate(const YAML::Node& resource, std::string* problem) {
  std::string api = scalarOf(childOf(resource, "apiVersion"));
  std::string kind = scalarOf(childOf(resource, "kind"));
  bool apps = startsWith(api, "apps/") && (kind == "Deployment" || kind == "StatefulSet" ||
                                           kind == "DaemonSet" || kind == "ReplicaSet");
  bool batch = startsWith(api, "batch/") && (kind == "Job" || kind == "CronJob");
  bool pod = api == "v1" && kind == "Pod";
  if (!apps && !batch && !pod) {
    return std::nullopt;
  }
  PodTemplate t;
  t.kind = kind;
  YAML::Node meta = childOf(resource, "metadata");
  t.name = scalarOf(childOf(meta, "name"));
  t.ns = scalarOf(childOf(meta, "namespace"));
  YAML::Node tmpl = resource;
  if (kind == "CronJob") {
    tmpl.reset(childOf(childOf(resource, "spec"), "jobTemplate"));  // a Job's metadata + spec
  }
  if (!pod) {
    tmpl.reset(childOf(childOf(tmpl, "spec"), "template"));
  }
  t.labels.reset(childOf(childOf(tmpl, "metadata"), "labels"));
  t.spec.reset(childOf(tmpl, "spec"));
  if (!childOf(t.spec, "containers").IsSequence()) {
    *problem = kind + "/" + t.name + ": no pod template with a list of containers, left as it is";
    return std::nullopt;
  }
  std::string restart = scalarOf(childOf(t.spec, "restartPolicy"));
  t.pods_end = batch || (pod && (restart == "Never" || restart == "OnFailure"));
  t.service_name = scalarOf(childOf(childOf(meta, "labels"), kNameLabel));
  if (t.service_name.empty()) {
    t.service_name = scalarOf(childOf(t.labels, kNameLabel));
  }
  if (t.service_name.empty()) {
    t.service_name = t.name.empty() ? kind : t.name;
  }
  return t;
}

std::optional<SidecarPlan> planSidecar(const PodTemplate& pod,
                                       const std::vector<PortTarget>& targets,
                                       const InjectOptions& options,
                                       std::vector<std::string>& notes) {
  const std::string who = pod.kind + "/" + pod.name;
  SidecarPlan plan;
  if (hasSidetraceContainer(pod.spec)) {
    plan.already_injected = true;
    readInjectedPorts(pod.spec, plan);
    return plan;
  }
  if (scalarOf(childOf(pod.spec, "hostNetwork")) == "true") {
    notes.push_back(who +
                    ": host network pod, left as it is (sidetrace's ports would be the "
                    "node's)");
    return std::nullopt;
  }
  std::vector<ContainerPort> declared = declaredPorts(pod.spec);
  auto app = choosePort(pod, declared, targets, options, notes);
  if (!app) {
    return std::nullopt;
  }
  plan.app_port = app->number;
  plan.app_port_name = app->name;
  std::set<int> used = portsInUse(pod.spec);
  used.insert(plan.app_port);
  plan.proxy_port = freePort(options.proxy_port, used);
  plan.admin_port = freePort(options.admin_port, used);
  if (options.egress || options.transparent) {
    plan.egress_port = freePort(options.egress_port, used);
  }
  plan.uid = plan.gid = kSidecarUid;
  if (options.process_rule == InjectOptions::ProcessRule::kUid) {
    std::tie(plan.uid, plan.gid) = appUser(pod, app->container, options);
  } else if (options.process_rule == InjectOptions::ProcessRule::kPtrace) {
    plan.uid = 0;
  }
  for (const auto& t : targets) {
    auto p = resolve(declared, t.number, t.name);
    if (!p || p->number != plan.app_port) {
      notes.push_back(t.service + ": sends to port " +
                      (t.number != 0 ? std::to_string(t.number) : t.name) + " of " + who +
                      " directly, untraced (sidetrace fronts port " +
                      std::to_string(plan.app_port) + " only)");
    }
  }
  return plan;
}

void applySidecar(PodTemplate& pod, const SidecarPlan& plan, const InjectOptions& options) {
  std::vector<ContainerPort> declared = declaredPorts(pod.spec);
  for (auto& p : declared) {
    if (!plan.app_port_name.empty() && p.name == plan.app_port_name) {
      p.entry.remove("name");
      renamePortReferences(p.container, plan.app_port_name, plan.app_port);
    }
  }
  if (options.egress) {
    addProxyEnv(pod.spec, plan.egress_port);
  }
  if (options.transparent) {
    addRedirectInit(pod.spec, plan, options);
  }
  if (options.process_rule != InjectOptions::ProcessRule::kOff) {
    pod.spec["shareProcessNamespace"] = yamlBool(true);  // the app's processes in sidetrace's /proc
  }
  bool native = options.native_sidecar || pod.pods_end;
  YAML::Node sidecar = sidecarContainer(pod, plan, options, native);
  if (!native) {
    pod.spec["containers"].push_back(sidecar);
    return;
  }
  // Last of the init containers: the ones before it (migrations, config fetchers) run as they
  // did; the app containers start once sidetrace has.
  YAML::Node init = childOf(pod.spec, "initContainers");
  if (init.IsSequence()) {
    init.push_back(sidecar);
  } else {
    YAML::Node list(YAML::NodeType::Sequence);
    list.push_back(sidecar);
    pod.spec["initContainers"] = list;
  }
}

YAML::Node lockedDownSecurityContext(int uid, int gid, YAML::Node capabilities) {
  YAML::Node sc(YAML::NodeType::Map);
  sc["runAsNonRoot"] = yamlBool(uid != 0);
  sc["runAsUser"] = yamlInt(uid);
  sc["runAsGroup"] = yamlInt(gid);
  sc["allowPrivilegeEscalation"] = yamlBool(false);
  sc["readOnlyRootFilesystem"] = yamlBool(true);
  sc["capabilities"] = capabilities;
  YAML::Node seccomp(YAML::NodeType::Map);
  seccomp["type"] = yamlString("RuntimeDefault");
  seccomp.SetStyle(YAML::EmitterStyle::Flow);
  sc["seccompProfile"] = seccomp;
  return sc;
}

}  // namespace sidetrace::config::detail
