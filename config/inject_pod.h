#pragma once
// The pod side of `sidetrace inject`: where a workload keeps its pod template, which app port
// sidetrace goes in front of, and the edit itself. The Service side and the stream are in
// inject.cc. Internal to config/.

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "config/inject.h"

namespace sidetrace::config::detail {

// A workload document and its pod template. The nodes refer into the document's tree: edits
// through them change the document.
struct PodTemplate {
  std::string kind;          // Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod
  std::string name;          // metadata.name, "" when absent
  std::string ns;            // metadata.namespace, "" when absent (then any namespace matches)
  std::string service_name;  // app.kubernetes.io/name of the workload or its pods, else name
  YAML::Node labels;         // the pods' labels (may be undefined)
  YAML::Node spec;           // the pod spec
  bool pods_end = false;     // Job, CronJob, Pod with restartPolicy Never / OnFailure
};

// The pod template of a workload resource (by apiVersion group and kind); nullopt for any other
// resource. *problem is set, and nullopt returned, for a workload whose pod spec has no list of
// containers.
std::optional<PodTemplate> findPodTemplate(const YAML::Node& resource, std::string* problem);

// A port a Service selecting the workload sends to: a number (also when the Service gives no
// targetPort: then its port) or a name.
struct PortTarget {
  std::string service;  // "Service/NAME", for notes
  int number = 0;       // 0 when by name
  std::string name;
};

struct SidecarPlan {
  bool already_injected = false;  // the pod has a container named sidetrace: left as it is
  int app_port = 0;               // where the app listens; 0 when unknown (already injected)
  std::string app_port_name;      // the name the sidetrace port takes over, "" if none
  int proxy_port = 0;             // sidetrace's listener
  int admin_port = 0;
  int egress_port = 0;  // its egress listener on 127.0.0.1 (--egress, --transparent); 0: none
  // Whom the sidecar runs as: the image's user, or the app's (--process-rule=uid), or root in
  // group kSidecarUid (--process-rule=ptrace).
  int uid = 0;
  int gid = 0;
};

// Chooses the app port: --port, else the first port a selecting Service sends to, else the
// first container port. nullopt (with a note) when the pod must be left alone: no port to front,
// host network. Notes also name Service ports that will not go through sidetrace. Throws
// ConfigError naming the workload when --process-rule=uid cannot tell the app's uid and gid.
std::optional<SidecarPlan> planSidecar(const PodTemplate& pod,
                                       const std::vector<PortTarget>& targets,
                                       const InjectOptions& options,
                                       std::vector<std::string>& notes);

// Adds the sidetrace container and moves the app port's name to it (the app container's probes
// that named the port get its number).
void applySidecar(PodTemplate& pod, const SidecarPlan& plan, const InjectOptions& options);

// Egress (inject_egress.cc). The app containers' proxy variables, HTTP_PROXY and HTTPS_PROXY (both
// spellings) pointing at the egress listener and NO_PROXY keeping loopback direct; a container
// that sets any of them in `env` already keeps its own set-up, untouched.
void addProxyEnv(YAML::Node spec, int egress_port);
// Transparent mode: the init container that runs k8s/egress-iptables.sh (installed in the image)
// as root with NET_ADMIN, after the pod's own init containers (which run before sidetrace does,
// and must not be redirected to it) and before a native sidetrace sidecar. Replaces one left by
// an earlier injection.
void addRedirectInit(YAML::Node spec, const SidecarPlan& plan, const InjectOptions& options);
// The uid the sidecar runs as: the image's USER (Dockerfile), set in its securityContext too so
// that runAsNonRoot holds whatever image --image names. The redirect excludes it.
inline constexpr int kSidecarUid = 65532;

// Helpers shared with inject.cc. Reading never adds keys to the tree.
// A container's securityContext, locked down the same way for the sidecar and the iptables init
// container: no privilege escalation, read-only root, RuntimeDefault seccomp; they differ only in
// the user (uid and gid) and the capabilities map given here.
YAML::Node lockedDownSecurityContext(int uid, int gid, YAML::Node capabilities);

YAML::Node childOf(const YAML::Node& map, const char* key);
std::string scalarOf(const YAML::Node& n);  // "" unless a scalar
// A plain (unquoted) integer 1..65535, else 0: `"8080"` in quotes is a port name to Kubernetes.
int portNumberOf(const YAML::Node& n);
int portNumberOfText(const std::string& text);  // "8080" -> 8080, else 0

}  // namespace sidetrace::config::detail
