// The stream side of `sidetrace inject`: every document parsed, workloads planned against the
// Services of the same stream, the changed documents written back, the others copied as read.

#include "config/inject.h"

#include "config/inject_pod.h"
#include "config/load.h"
#include "config/yaml_stream.h"

namespace sidetrace::config {

namespace {

using detail::childOf;
using detail::PodTemplate;
using detail::portNumberOf;
using detail::PortTarget;
using detail::scalarOf;
using detail::SidecarPlan;

struct Resource {
  YAML::Node node;
  size_t doc = 0;
};

struct Service {
  YAML::Node node;
  size_t doc = 0;
  std::string name;
  std::string ns;
};

struct Workload {
  PodTemplate pod;
  size_t doc = 0;
  std::optional<SidecarPlan> plan;
};

bool isKind(const YAML::Node& r, const char* api, const char* kind) {
  return scalarOf(childOf(r, "apiVersion")) == api && scalarOf(childOf(r, "kind")) == kind;
}

// The top-level resource, or the items of a v1 List (`kubectl get -o yaml` writes those).
void collectResources(const YAML::Node& root, size_t doc, std::vector<Resource>& out) {
  if (!root.IsMap()) {
    return;
  }
  if (!isKind(root, "v1", "List")) {
    out.push_back({root, doc});
    return;
  }
  YAML::Node items = childOf(root, "items");
  if (items.IsSequence()) {
    for (const auto& item : items) {
      if (item.IsMap()) {
        out.push_back({item, doc});
      }
    }
  }
}

// A resource without a namespace lands in whichever one `kubectl apply -n` names, so it may be
// the other's.
bool sameNamespace(const std::string& a, const std::string& b) {
  return a.empty() || b.empty() || a == b;
}

// As Kubernetes decides it: every selector label equal on the pods. A Service without selector
// has its endpoints managed by hand and selects nothing; ExternalName ones have no pods.
bool selects(const Service& s, const PodTemplate& pod) {
  YAML::Node spec = childOf(s.node, "spec");
  YAML::Node selector = childOf(spec, "selector");
  if (!sameNamespace(s.ns, pod.ns) || !selector.IsMap() || selector.size() == 0 ||
      scalarOf(childOf(spec, "type")) == "ExternalName") {
    return false;
  }
  for (const auto& kv : selector) {
    YAML::Node value = childOf(pod.labels, kv.first.Scalar().c_str());
    if (!value.IsScalar() || !kv.second.IsScalar() || value.Scalar() != kv.second.Scalar()) {
      return false;
    }
  }
  return true;
}

std::vector<YAML::Node> tcpPorts(const Service& s) {
  std::vector<YAML::Node> ports;
  YAML::Node list = childOf(childOf(s.node, "spec"), "ports");
  if (list.IsSequence()) {
    for (const auto& p : list) {
      std::string protocol = scalarOf(childOf(p, "protocol"));
      if (p.IsMap() && (protocol.empty() || protocol == "TCP")) {
        ports.push_back(p);
      }
    }
  }
  return ports;
}

// Without targetPort a Service port sends to the same port number on the pods.
PortTarget targetOf(const Service& s, const YAML::Node& port) {
  PortTarget t;
  t.service = "Service/" + s.name;
  YAML::Node target = childOf(port, "targetPort");
  if (!target.IsDefined() || target.IsNull()) {
    t.number = portNumberOf(childOf(port, "port"));
  } else if (int n = portNumberOf(target); n != 0) {
    t.number = n;
  } else {
    t.name = scalarOf(target);
  }
  return t;
}

// Ports that send to the app port by number now send to sidetrace's; by name they already do,
// since sidetrace's port took the name over. Returns what changed, for the notes.
std::vector<std::string> pointServiceAtSidecar(const Service& s, const SidecarPlan& plan) {
  std::vector<std::string> changes;
  if (plan.app_port == 0 || plan.proxy_port == 0 || plan.app_port == plan.proxy_port) {
    return changes;
  }
  for (YAML::Node port : tcpPorts(s)) {
    if (targetOf(s, port).number == plan.app_port) {
      port["targetPort"] = detail::yamlInt(plan.proxy_port);
      changes.push_back("Service/" + s.name + ": targetPort " + std::to_string(plan.app_port) +
                        " -> " + std::to_string(plan.proxy_port) + " (sidetrace)");
    }
  }
  return changes;
}

std::string describe(const Workload& w, const InjectOptions& options) {
  const SidecarPlan& p = *w.plan;
  std::string who = w.pod.kind + "/" + w.pod.name + ": ";
  if (p.already_injected) {
    return who + "has a sidetrace container already, left as it is";
  }
  std::string app = std::to_string(p.app_port);
  if (!p.app_port_name.empty()) {
    app += " (" + p.app_port_name + ")";
  }
  bool native = options.native_sidecar || w.pod.pods_end;
  std::string egress;
  if (p.egress_port != 0) {
    egress = ", egress on 127.0.0.1:" + std::to_string(p.egress_port) +
             (options.egress ? " (HTTP_PROXY)" : "") +
             (options.transparent ? " (iptables: ports " + options.redirect_ports + ")" : "");
  }
  using PR = InjectOptions::ProcessRule;
  if (options.process_rule == PR::kUid) {
    egress += ", process rule as uid " + std::to_string(p.uid) + " gid " + std::to_string(p.gid);
  } else if (options.process_rule == PR::kPtrace) {
    egress += ", process rule as root with SYS_PTRACE";
  }
  return who + "sidetrace on port " + std::to_string(p.proxy_port) + " in front of port " + app +
         (native ? ", as a native sidecar" : "") + egress;
}

}  // namespace

InjectResult injectSidecars(const std::string& yaml, const std::string& source,
                            const InjectOptions& options) {
  InjectResult result;
  std::vector<detail::YamlDocument> docs = detail::splitYamlStream(yaml);
  std::vector<YAML::Node> roots;
  std::vector<Resource> resources;
  for (size_t i = 0; i < docs.size(); ++i) {
    roots.push_back(detail::parseYamlDocument(docs[i], source));
    collectResources(roots.back(), i, resources);
  }
  std::vector<Service> services;
  std::vector<Workload> workloads;
  for (const Resource& r : resources) {
    YAML::Node meta = childOf(r.node, "metadata");
    if (isKind(r.node, "v1", "Service")) {
      services.push_back(
          {r.node, r.doc, scalarOf(childOf(meta, "name")), scalarOf(childOf(meta, "namespace"))});
      continue;
    }
    std::string problem;
    if (auto pod = detail::findPodTemplate(r.node, &problem)) {
      workloads.push_back({std::move(*pod), r.doc, std::nullopt});
    } else if (!problem.empty()) {
      result.notes.push_back(problem);
    }
  }
  // Every plan is made before any Service changes: a Service may select several workloads.
  std::vector<bool> changed(docs.size(), false);
  for (Workload& w : workloads) {
    std::vector<PortTarget> targets;
    for (const Service& s : services) {
      if (selects(s, w.pod)) {
        for (const YAML::Node& port : tcpPorts(s)) {
          targets.push_back(targetOf(s, port));
        }
      }
    }
    w.plan = detail::planSidecar(w.pod, targets, options, result.notes);
    if (w.plan && !w.plan->already_injected) {
      detail::applySidecar(w.pod, *w.plan, options);
      changed[w.doc] = true;
    }
  }
  for (const Workload& w : workloads) {
    if (!w.plan) {
      continue;
    }
    result.notes.push_back(describe(w, options));
    for (const Service& s : services) {
      if (selects(s, w.pod)) {
        for (std::string& change : pointServiceAtSidecar(s, *w.plan)) {
          result.notes.push_back(std::move(change));
          changed[s.doc] = true;
        }
      }
    }
  }
  for (size_t i = 0; i < docs.size(); ++i) {
    result.output +=
        changed[i] ? detail::reemitYamlDocument(docs[i], roots[i], source) : docs[i].text;
  }
  return result;
}

}  // namespace sidetrace::config
