#pragma once
// `sidetrace inject`: adds the sidetrace sidecar to the workloads of a Kubernetes YAML stream, the
// way `linkerd inject` and `istioctl kube-inject` do, with no cluster component. The pod template
// of every Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and Pod gets a container
// named `sidetrace` in front of one app port; the Services of the same stream that select the
// workload are pointed at it; every other document is copied byte for byte. Running it on its own
// output changes nothing. README "sidetrace inject" is the user's view.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sidetrace::config {

// Where the collector of k8s/ listens (OTLP/gRPC), the default export target.
inline constexpr const char* kInjectDefaultOtlpEndpoint =
    "http://otel-collector.observability.svc.cluster.local:4317";
// The image README "Deploy on Kubernetes" builds (`docker build -t sidetrace:latest .`); pulled
// only if not present, so an image loaded into the cluster by hand is used as it is.
inline constexpr const char* kInjectDefaultImage = "sidetrace:latest";

struct InjectOptions {
  std::string input_path = "-";  // "-": stdin
  std::string image = kInjectDefaultImage;
  std::optional<std::string> service_name;  // else the app.kubernetes.io/name label, else the name
  std::string otlp_endpoint = kInjectDefaultOtlpEndpoint;  // "console": spans on the pod's log
  std::optional<std::string> otlp_protocol;                // grpc | http/protobuf | http/json
  std::optional<std::string> sampler;                      // OTEL_TRACES_SAMPLER
  std::optional<std::string> sampler_arg;                  // OTEL_TRACES_SAMPLER_ARG (a ratio)
  std::vector<std::string> ignore_paths;
  std::optional<std::string> port;  // the app port to front, by name or number
  uint16_t proxy_port = 15001;      // sidetrace's listener (moved up past ports the pod uses)
  uint16_t admin_port = 9901;
  uint32_t workers = 2;  // not "one per core": a sidecar would count the node's cores
  std::vector<std::pair<std::string, std::string>> requests = {{"cpu", "100m"}, {"memory", "64Mi"}};
  std::vector<std::pair<std::string, std::string>> limits = {{"memory", "256Mi"}};
  // Native sidecar (init container with restartPolicy Always, Kubernetes >= 1.29) for every
  // workload; without it only for those whose pods end: Jobs, CronJobs, Pods that do not restart.
  bool native_sidecar = false;
  // The app's outbound HTTP through sidetrace's egress listener on 127.0.0.1:egress_port (README
  // "Egress"). `egress`: the app containers get the standard proxy variables (forward-proxy
  // mode). `transparent`: an init container redirects their outbound TCP to redirect_ports with
  // iptables (k8s/egress-iptables.sh, in the image), sidetrace's uid excluded.
  bool egress = false;
  bool transparent = false;
  uint16_t egress_port = 15002;
  std::string redirect_ports = "80";  // "80,8080" or "all"
  // How the egress `process` rule (README "Egress") may see the app's sockets: it reads
  // /proc/PID/fd of the app's processes, which needs the pod's processes in one namespace
  // (shareProcessNamespace) and the kernel's ptrace read check to pass. `uid`: the sidecar runs as
  // the app container's uid and gid (process_rule_user, else its runAsUser/runAsGroup). `ptrace`:
  // as root with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH only. kOff: neither (the rule reports
  // itself unavailable in the pod and the next rule decides).
  enum class ProcessRule { kOff, kUid, kPtrace };
  ProcessRule process_rule = ProcessRule::kOff;
  std::optional<std::pair<int, int>> process_rule_user;  // --process-rule-user UID:GID
  bool show_help = false;
};

struct InjectResult {
  std::string output;              // the rewritten stream
  std::vector<std::string> notes;  // one line per workload: what was done or why not
};

// Throws ConfigError "SOURCE:LINE:COLUMN: message" for YAML that does not parse.
InjectResult injectSidecars(const std::string& yaml, const std::string& source,
                            const InjectOptions& options);

// argv[0] is "inject". Throws ConfigError("--flag: ...") naming the flag.
InjectOptions parseInjectArgs(int argc, const char* const* argv);
std::string injectUsage();

// The subcommand: reads the input, writes the stream to stdout and the notes to stderr.
// Returns the exit code: 0, or 1 for bad arguments, an unreadable file or invalid YAML.
int runInject(int argc, const char* const* argv);

}  // namespace sidetrace::config
