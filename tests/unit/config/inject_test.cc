#include "config/inject.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "config/load.h"
#include "config/yaml_stream.h"
#include "tests/unit/config/env_map.h"

namespace sidetrace::config {
namespace {

using testing::errorOf;

InjectOptions options() {
  InjectOptions o;
  o.image = "sidetrace:0.1.0";  // not the build's version: the expected texts stay put
  return o;
}

InjectResult run(const std::string& in, const InjectOptions& o = options()) {
  return injectSidecars(in, "t.yaml", o);
}

std::string inject(const std::string& in, const InjectOptions& o = options()) {
  return run(in, o).output;
}

std::vector<YAML::Node> docsOf(const std::string& text) {
  return YAML::LoadAll(text);
}

YAML::Node named(const YAML::Node& list, const std::string& name) {
  for (const auto& item : list) {
    if (item["name"] && item["name"].Scalar() == name) {
      return item;
    }
  }
  return YAML::Node();
}

YAML::Node podSpec(const YAML::Node& workload) {
  return workload["spec"]["template"]["spec"];
}

std::vector<std::string> stringsOf(const YAML::Node& seq) {
  std::vector<std::string> out;
  for (const auto& s : seq) {
    out.push_back(s.Scalar());
  }
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string envValue(const YAML::Node& container, const std::string& name) {
  YAML::Node e = named(container["env"], name);
  return e && e["value"] ? e["value"].Scalar() : "<unset>";
}

const char* kDeployment = R"(apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
  labels: {app.kubernetes.io/name: orders-api}
spec:
  selector:
    matchLabels: {app: orders}
  template:
    metadata:
      labels: {app: orders}
    spec:
      containers:
        - name: app
          image: registry.example.com/orders:1
          command: [/orders, --port, "8080"]
          env:
            - {name: LIMIT, value: "100"}
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet: {path: /health, port: http}
)";

const char* kServiceByName = R"(---
apiVersion: v1
kind: Service
metadata: {name: orders}
spec:
  selector: {app: orders}
  ports:
    - {name: web, port: 80, targetPort: http}
)";

TEST(Inject, SidecarTakesOverANamedPortAndTheServiceKeepsWorking) {
  std::string out = inject(std::string(kDeployment) + kServiceByName);
  auto docs = docsOf(out);
  ASSERT_EQ(docs.size(), 2u) << out;
  YAML::Node spec = podSpec(docs[0]);
  ASSERT_EQ(spec["containers"].size(), 2u) << out;
  YAML::Node app = named(spec["containers"], "app");
  YAML::Node sidecar = named(spec["containers"], "sidetrace");
  ASSERT_TRUE(sidecar) << out;
  // The app keeps image, command and env; its port loses the name, its probe gives the number.
  YAML::Node original = podSpec(YAML::Load(kDeployment))["containers"][0];
  EXPECT_TRUE(detail::sameYamlMeaning(app["image"], original["image"]));
  EXPECT_TRUE(detail::sameYamlMeaning(app["command"], original["command"]));
  EXPECT_TRUE(detail::sameYamlMeaning(app["env"], original["env"])) << out;
  EXPECT_FALSE(app["ports"][0]["name"]) << out;
  EXPECT_EQ(app["ports"][0]["containerPort"].Scalar(), "8080");
  EXPECT_EQ(app["readinessProbe"]["httpGet"]["port"].Scalar(), "8080");
  EXPECT_EQ(app["readinessProbe"]["httpGet"]["port"].Tag(), "?") << "a number, not a name";
  // The sidecar holds the name, forwards to the app on loopback.
  EXPECT_EQ(sidecar["image"].Scalar(), "sidetrace:0.1.0");
  EXPECT_EQ(sidecar["imagePullPolicy"].Scalar(), "IfNotPresent");
  EXPECT_EQ(sidecar["ports"][0]["name"].Scalar(), "http");
  EXPECT_EQ(sidecar["ports"][0]["containerPort"].Scalar(), "15001");
  EXPECT_EQ(sidecar["ports"][1]["name"].Scalar(), "sidetrace-admin");
  auto args = stringsOf(sidecar["args"]);
  EXPECT_TRUE(contains(args, "--listen=0.0.0.0:15001")) << out;
  EXPECT_TRUE(contains(args, "--upstream=127.0.0.1:8080")) << out;
  EXPECT_TRUE(contains(args, "--admin=0.0.0.0:9901")) << out;
  EXPECT_TRUE(contains(args, "--service-name=orders-api")) << "the workload's name label";
  EXPECT_EQ(sidecar["readinessProbe"]["httpGet"]["path"].Scalar(), "/ready");
  EXPECT_EQ(sidecar["readinessProbe"]["httpGet"]["port"].Scalar(), "sidetrace-admin");
  EXPECT_EQ(sidecar["securityContext"]["runAsNonRoot"].Scalar(), "true");
  // The Service, by name, is untouched: byte for byte.
  EXPECT_NE(out.find(kServiceByName), std::string::npos) << out;
}

TEST(Inject, ResourceAttributesComeFromTheDownwardApi) {
  std::string out = inject(kDeployment);
  YAML::Node sidecar = named(podSpec(docsOf(out)[0])["containers"], "sidetrace");
  EXPECT_EQ(named(sidecar["env"], "K8S_POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"].Scalar(),
            "metadata.name");
  EXPECT_EQ(named(sidecar["env"], "K8S_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"].Scalar(),
            "metadata.namespace");
  EXPECT_EQ(named(sidecar["env"], "K8S_NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"].Scalar(),
            "spec.nodeName");
  EXPECT_EQ(envValue(sidecar, "OTEL_RESOURCE_ATTRIBUTES"),
            "k8s.pod.name=$(K8S_POD_NAME),k8s.pod.uid=$(K8S_POD_UID),"
            "k8s.namespace.name=$(K8S_NAMESPACE),k8s.node.name=$(K8S_NODE_NAME),"
            "k8s.deployment.name=orders");
  EXPECT_EQ(envValue(sidecar, "OTEL_EXPORTER_OTLP_ENDPOINT"), kInjectDefaultOtlpEndpoint);
  // Drain (15 s at most) and the span flush within the default 30 s grace period.
  EXPECT_EQ(envValue(sidecar, "OTEL_BSP_EXPORT_TIMEOUT"), "5000");
  // $(VAR) references only work for variables defined before them in the list.
  std::vector<std::string> names;
  for (const auto& e : sidecar["env"]) {
    names.push_back(e["name"].Scalar());
  }
  auto attrs = std::find(names.begin(), names.end(), "OTEL_RESOURCE_ATTRIBUTES");
  EXPECT_TRUE(std::find(names.begin(), attrs, "K8S_NODE_NAME") != attrs);
}

TEST(Inject, ServicesByNumberArePointedAtTheSidecar) {
  const std::string in = R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: billing}
spec:
  template:
    metadata: {labels: {app: billing, tier: backend}}
    spec:
      containers:
        - name: billing
          image: billing:2
          ports:
            - containerPort: 8080
            - {name: metrics, containerPort: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: by-number}
spec:
  selector: {app: billing}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: no-target-port}
spec:
  selector: {app: billing}
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: metrics}
spec:
  selector: {app: billing}
  ports: [{port: 9090, targetPort: metrics}]
---
apiVersion: v1
kind: Service
metadata: {name: other-app}
spec:
  selector: {app: billing, tier: frontend}
  ports: [{port: 80, targetPort: 8080}]
)";
  InjectResult r = run(in);
  auto docs = docsOf(r.output);
  ASSERT_EQ(docs.size(), 5u);
  EXPECT_EQ(docs[1]["spec"]["ports"][0]["targetPort"].Scalar(), "15001") << r.output;
  EXPECT_EQ(docs[2]["spec"]["ports"][0]["targetPort"].Scalar(), "15001") << r.output;
  EXPECT_EQ(docs[2]["spec"]["ports"][0]["port"].Scalar(), "8080");
  EXPECT_EQ(docs[3]["spec"]["ports"][0]["targetPort"].Scalar(), "metrics");
  EXPECT_EQ(docs[4]["spec"]["ports"][0]["targetPort"].Scalar(), "8080") << "selects no billing pod";
  YAML::Node sidecar = named(podSpec(docs[0])["containers"], "sidetrace");
  EXPECT_FALSE(sidecar["ports"][0]["name"]) << "the app port had no name";
  EXPECT_TRUE(contains(stringsOf(sidecar["args"]), "--upstream=127.0.0.1:8080"));
  EXPECT_TRUE(std::any_of(r.notes.begin(), r.notes.end(), [](const std::string& n) {
    return n.find("Service/metrics: sends to port metrics of Deployment/billing directly") !=
           std::string::npos;
  })) << ::testing::PrintToString(r.notes);
}

TEST(Inject, PortOptionPicksWhichAppPortIsFronted) {
  const std::string in = R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
        - name: app
          image: app
          ports: [{name: http, containerPort: 8080}, {name: grpc, containerPort: 9000}]
)";
  InjectOptions o = options();
  o.port = "grpc";
  auto sidecar = named(podSpec(docsOf(inject(in, o))[0])["containers"], "sidetrace");
  EXPECT_TRUE(contains(stringsOf(sidecar["args"]), "--upstream=127.0.0.1:9000"));
  EXPECT_EQ(sidecar["ports"][0]["name"].Scalar(), "grpc");
  o.port = "7777";  // not declared: still the app's port
  sidecar = named(podSpec(docsOf(inject(in, o))[0])["containers"], "sidetrace");
  EXPECT_TRUE(contains(stringsOf(sidecar["args"]), "--upstream=127.0.0.1:7777"));
  o.port = "nope";
  InjectResult r = run(in, o);
  EXPECT_EQ(r.output, in);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_EQ(r.notes[0], "Deployment/d: no container port named 'nope', left as it is");
}

TEST(Inject, SidecarPortsMoveAwayFromPortsThePodUses) {
  const std::string in = R"(apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
    - name: app
      image: app
      ports: [{containerPort: 15001}, {containerPort: 9901}, {containerPort: 15002}]
)";
  auto sidecar = named(docsOf(inject(in))[0]["spec"]["containers"], "sidetrace");
  auto args = stringsOf(sidecar["args"]);
  EXPECT_TRUE(contains(args, "--listen=0.0.0.0:15003")) << ::testing::PrintToString(args);
  EXPECT_TRUE(contains(args, "--admin=0.0.0.0:9902"));
  EXPECT_TRUE(contains(args, "--upstream=127.0.0.1:15001"));
}

TEST(Inject, SeveralContainersAndInitContainersStayAsTheyWere) {
  const std::string in = R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: catalog}
spec:
  template:
    metadata: {labels: {app: catalog}}
    spec:
      initContainers:
        - {name: migrate, image: "catalog:7", command: [/migrate, up]}
      containers:
        - name: log-shipper
          image: fluent/fluent-bit:2.2
        - name: catalog
          image: "catalog:7"
          ports: [{name: web, containerPort: 8000}]
          lifecycle:
            preStop:
              httpGet: {path: /drain, port: web}
)";
  YAML::Node before = podSpec(YAML::Load(in));
  YAML::Node after = podSpec(docsOf(inject(in))[0]);
  EXPECT_TRUE(detail::sameYamlMeaning(after["initContainers"], before["initContainers"]));
  ASSERT_EQ(after["containers"].size(), 3u);
  EXPECT_TRUE(detail::sameYamlMeaning(after["containers"][0], before["containers"][0]));
  EXPECT_EQ(after["containers"][1]["lifecycle"]["preStop"]["httpGet"]["port"].Scalar(), "8000");
  EXPECT_EQ(after["containers"][2]["name"].Scalar(), "sidetrace");
  EXPECT_TRUE(contains(stringsOf(after["containers"][2]["args"]), "--service-name=catalog"))
      << "no name label: the workload's name";
}

TEST(Inject, JobsAndCronJobsGetANativeSidecarAfterTheirInitContainers) {
  const std::string in = R"(apiVersion: batch/v1
kind: Job
metadata: {name: reindex}
spec:
  template:
    spec:
      restartPolicy: Never
      initContainers: [{name: wait, image: busybox}]
      containers: [{name: job, image: job, ports: [{containerPort: 8081}]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 2 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: report, ports: [{containerPort: 8080}]}]
)";
  auto docs = docsOf(inject(in));
  YAML::Node job = podSpec(docs[0]);
  ASSERT_EQ(job["initContainers"].size(), 2u);
  EXPECT_EQ(job["initContainers"][0]["name"].Scalar(), "wait");
  EXPECT_EQ(job["initContainers"][1]["name"].Scalar(), "sidetrace");
  EXPECT_EQ(job["initContainers"][1]["restartPolicy"].Scalar(), "Always");
  EXPECT_EQ(job["containers"].size(), 1u);
  YAML::Node cron = docs[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
  ASSERT_EQ(cron["initContainers"].size(), 1u);
  YAML::Node sidecar = cron["initContainers"][0];
  EXPECT_EQ(sidecar["restartPolicy"].Scalar(), "Always");
  EXPECT_NE(envValue(sidecar, "OTEL_RESOURCE_ATTRIBUTES").find("k8s.cronjob.name=nightly"),
            std::string::npos);
  EXPECT_EQ(docs[1]["spec"]["schedule"].Tag(), "!") << "still a quoted string";
}

TEST(Inject, EveryWorkloadKindAndPodsThatEnd) {
  std::string in;
  for (const char* kind : {"StatefulSet", "DaemonSet", "ReplicaSet"}) {
    in += std::string("---\napiVersion: apps/v1\nkind: ") + kind +
          "\nmetadata: {name: w}\nspec:\n  template:\n    spec:\n      containers: [{name: a, "
          "image: a, ports: [{containerPort: 80}]}]\n";
  }
  in +=
      "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, "
      "image: a, ports: [{containerPort: 80}]}]\n";
  in +=
      "---\napiVersion: v1\nkind: Pod\nmetadata: {name: once}\nspec:\n  restartPolicy: Never\n"
      "  containers: [{name: a, image: a, ports: [{containerPort: 80}]}]\n";
  auto docs = docsOf(inject(in));
  ASSERT_EQ(docs.size(), 5u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(named(podSpec(docs[i])["containers"], "sidetrace")) << docs[i]["kind"];
  }
  EXPECT_TRUE(named(docs[3]["spec"]["containers"], "sidetrace"));
  EXPECT_FALSE(docs[3]["spec"]["initContainers"]);
  EXPECT_TRUE(named(docs[4]["spec"]["initContainers"], "sidetrace")) << "restartPolicy: Never";
  InjectOptions o = options();
  o.native_sidecar = true;
  docs = docsOf(inject(in, o));
  EXPECT_EQ(named(podSpec(docs[0])["initContainers"], "sidetrace")["restartPolicy"].Scalar(),
            "Always");
}

TEST(Inject, WhatIsLeftAloneIsCopiedByteForByte) {
  const std::string in = R"(# no port: nothing to front
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker}
spec:
  template:
    spec:
      containers: [{name: w, image: w}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: a, image: a, ports: [{containerPort: 9100}]}]
---
apiVersion: batch.volcano.sh/v1alpha1   # a Job, but not Kubernetes' own
kind: Job
metadata: {name: vc}
spec: {tasks: []}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec: {template: {spec: {}}}
)";
  InjectResult r = run(in);
  EXPECT_EQ(r.output, in);
  EXPECT_EQ(r.notes, (std::vector<std::string>{
                         "Deployment/broken: no pod template with a list of containers, left as "
                         "it is",
                         "Deployment/worker: no container port for sidetrace to front, left as "
                         "it is (name one with --port)",
                         "DaemonSet/agent: host network pod, left as it is (sidetrace's ports "
                         "would be the node's)"}));
}

TEST(Inject, OddShapesAreLeftAloneNotCrashedOn) {
  const std::string in = R"(apiVersion: apps/v1
kind: Deployment
metadata: [not, a, map]
spec: 5
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    metadata: {labels: [a]}
    spec:
      containers: [1, [2], {name: x, ports: [p, {containerPort: "80"}, {containerPort: 99999}]}]
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec: {selector: [a], ports: [1, {targetPort: {x: 1}}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: loop}
data: &a {b: *a}
---
apiVersion: v1
kind: List
items: [1, {kind: Pod}]
---
- just
- a list
---
plain scalar
)";
  InjectResult r;
  ASSERT_NO_THROW(r = run(in));
  EXPECT_EQ(r.output, in);
  EXPECT_EQ(r.notes.size(), 2u) << ::testing::PrintToString(r.notes);
}

TEST(Inject, OtherDocumentsKeepTheirBytesAndTheirStrings) {
  const std::string config_map = R"(---
# settings
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  pool: "100"     # must stay a string
  strict: "NO"
  closes: "23:59"
  store: '007'
  debug: "true"
  batch: "1e3"
  mask: "0x1F"
  tilde: "~"
  nothing: "null"
  empty: ""
  script: |
    echo hi
---
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {token: "0123"}
---
)";
  std::string in = std::string(kDeployment) + config_map;
  std::string out = inject(in);
  EXPECT_NE(out.find(config_map), std::string::npos) << out;
  auto in_docs = docsOf(in);
  auto out_docs = docsOf(out);
  ASSERT_EQ(in_docs.size(), out_docs.size());
  for (size_t i = 1; i < in_docs.size(); ++i) {
    EXPECT_TRUE(detail::sameYamlMeaning(in_docs[i], out_docs[i])) << i;
  }
  // The changed document keeps its quoted strings quoted too.
  YAML::Node app = named(podSpec(out_docs[0])["containers"], "app");
  EXPECT_EQ(app["env"][0]["value"].Tag(), "!");
  EXPECT_EQ(app["command"][2].Tag(), "!");
}

TEST(Inject, InjectingTwiceIsInjectingOnce) {
  std::string in = std::string(kDeployment) + kServiceByName +
                   "---\napiVersion: v1\nkind: Service\nmetadata: {name: n}\nspec:\n  selector: "
                   "{app: orders}\n  ports: [{port: 8080}]\n";
  std::string once = inject(in);
  ASSERT_NE(once, in);
  InjectResult twice = run(once);
  EXPECT_EQ(twice.output, once);
  EXPECT_EQ(twice.notes,
            std::vector<std::string>{"Deployment/orders: has a sidetrace container already, left "
                                     "as it is"});
}

TEST(Inject, ExistingSidecarStillGetsServicesAddedSince) {
  // Written by hand or by an earlier inject; a Service sending to the app port by number is
  // pointed at the listener its --listen names.
  const std::string in = R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    metadata: {labels: {app: d}}
    spec:
      containers:
        - {name: app, image: app, ports: [{containerPort: 8080}]}
        - name: sidetrace
          image: sidetrace:latest
          args: [--listen, "0.0.0.0:16000", --upstream, "127.0.0.1:8080"]
---
apiVersion: v1
kind: Service
metadata: {name: d}
spec:
  selector: {app: d}
  ports: [{port: 80, targetPort: 8080}]
)";
  auto docs = docsOf(inject(in));
  EXPECT_EQ(podSpec(docs[0])["containers"].size(), 2u);
  EXPECT_EQ(docs[1]["spec"]["ports"][0]["targetPort"].Scalar(), "16000");
}

TEST(Inject, ServicesInAnotherNamespaceAreNotTouched) {
  std::string deployment = kDeployment;
  deployment.replace(deployment.find("  name: orders\n"), 15, "  name: orders\n  namespace: a\n");
  const std::string service =
      "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: b}\nspec:\n  "
      "selector: {app: orders}\n  ports: [{port: 8080}]\n";
  std::string out = inject(deployment + service);
  EXPECT_NE(out.find(service), std::string::npos) << out;
}

TEST(Inject, ItemsOfAListAreInjected) {
  const std::string in = R"(apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: {name: p, labels: {app: p}}
    spec:
      containers: [{name: a, image: a, ports: [{containerPort: 80}]}]
  - apiVersion: v1
    kind: Service
    metadata: {name: p}
    spec: {selector: {app: p}, ports: [{port: 80}]}
)";
  YAML::Node list = docsOf(inject(in))[0];
  EXPECT_TRUE(named(list["items"][0]["spec"]["containers"], "sidetrace"));
  EXPECT_EQ(list["items"][1]["spec"]["ports"][0]["targetPort"].Scalar(), "15001");
}

TEST(Inject, OptionsReachTheSidecar) {
  InjectOptions o = options();
  o.service_name = "checkout";
  o.otlp_endpoint = "console";
  o.sampler = "parentbased_traceidratio";
  o.sampler_arg = "0.1";
  o.ignore_paths = {"/health", "/metrics"};
  o.requests = {};
  o.limits = {{"cpu", "1"}, {"memory", "128Mi"}};
  o.workers = 1;
  YAML::Node sidecar = named(podSpec(docsOf(inject(kDeployment, o))[0])["containers"], "sidetrace");
  auto args = stringsOf(sidecar["args"]);
  EXPECT_TRUE(contains(args, "--service-name=checkout"));
  EXPECT_TRUE(contains(args, "--ignore-path=/health"));
  EXPECT_TRUE(contains(args, "--ignore-path=/metrics"));
  EXPECT_TRUE(contains(args, "--workers=1"));
  EXPECT_EQ(envValue(sidecar, "OTEL_TRACES_EXPORTER"), "console");
  EXPECT_EQ(envValue(sidecar, "OTEL_EXPORTER_OTLP_ENDPOINT"), "<unset>");
  EXPECT_EQ(envValue(sidecar, "OTEL_BSP_EXPORT_TIMEOUT"), "<unset>");  // no collector to wait on
  EXPECT_EQ(envValue(sidecar, "OTEL_TRACES_SAMPLER"), "parentbased_traceidratio");
  EXPECT_EQ(envValue(sidecar, "OTEL_TRACES_SAMPLER_ARG"), "0.1");
  EXPECT_EQ(named(sidecar["env"], "OTEL_TRACES_SAMPLER_ARG")["value"].Tag(), "!");
  EXPECT_FALSE(sidecar["resources"]["requests"]);
  EXPECT_EQ(sidecar["resources"]["limits"]["cpu"].Scalar(), "1");
  EXPECT_EQ(sidecar["resources"]["limits"]["cpu"].Tag(), "!");
  o.limits = {};
  sidecar = named(podSpec(docsOf(inject(kDeployment, o))[0])["containers"], "sidetrace");
  EXPECT_FALSE(sidecar["resources"]);
}

TEST(Inject, VersionLabelBecomesServiceVersion) {
  std::string in = kDeployment;
  in.replace(in.find("labels: {app: orders}"), 21,
             "labels: {app: orders, app.kubernetes.io/version: \"1.4.2\"}");
  YAML::Node sidecar = named(podSpec(docsOf(inject(in))[0])["containers"], "sidetrace");
  EXPECT_EQ(named(sidecar["env"], "SERVICE_VERSION")["valueFrom"]["fieldRef"]["fieldPath"].Scalar(),
            "metadata.labels['app.kubernetes.io/version']");
  EXPECT_NE(
      envValue(sidecar, "OTEL_RESOURCE_ATTRIBUTES").find(",service.version=$(SERVICE_VERSION)"),
      std::string::npos);
}

TEST(Inject, InvalidYamlNamesTheLine) {
  const std::string deployment = kDeployment;
  const std::string in = deployment + "---\nkind: ConfigMap\ndata:\n  a: b\n   c: d\n";
  const auto bad_line = std::count(deployment.begin(), deployment.end(), '\n') + 5;
  EXPECT_EQ(errorOf([&] { inject(in); }),
            "t.yaml:" + std::to_string(bad_line) + ":5: illegal map value");
  EXPECT_EQ(errorOf([&] { inject("a: b\n  c: d\n"); }), "t.yaml:2:4: illegal map value");
  // An unclosed flow collection is noticed where the input ends.
  EXPECT_EQ(errorOf([&] { inject("a: 1\n---\nb: [1, 2\n"); }),
            "t.yaml:4:1: end of sequence flow not found");
}

TEST(Inject, EmptyInputsAndBareSeparators) {
  EXPECT_EQ(inject(""), "");
  EXPECT_EQ(inject("\n"), "\n");
  EXPECT_EQ(inject("# just a comment\n"), "# just a comment\n");
  EXPECT_EQ(inject("---\n---\n...\n"), "---\n---\n...\n");
  // A leading and a trailing empty document around a workload stay where they are.
  std::string out = inject(std::string("---\n---\n") + kDeployment + "---\n");
  EXPECT_EQ(out.rfind("---\n---\napiVersion: apps/v1\n", 0), 0u) << out;
  EXPECT_EQ(out.substr(out.size() - 5), "\n---\n") << out;
  EXPECT_EQ(docsOf(out).size(), 3u);
}

// ---- the command line ----------------------------------------------------------------------

InjectOptions parse(std::vector<const char*> args) {
  args.insert(args.begin(), "inject");
  return parseInjectArgs(static_cast<int>(args.size()), args.data());
}

std::string parseError(std::vector<const char*> args) {
  return errorOf([&] { parse(std::move(args)); });
}

TEST(InjectArgs, Flags) {
  InjectOptions o = parse({"-f",
                           "app.yaml",
                           "--image=reg/sidetrace:1",
                           "--service-name",
                           "s",
                           "--otlp-endpoint",
                           "http://c:4317",
                           "--otlp-protocol",
                           "grpc",
                           "--sampler",
                           "traceidratio",
                           "--sampler-arg",
                           "0.25",
                           "--ignore-path",
                           "/a",
                           "--ignore-path=/b",
                           "--port",
                           "http",
                           "--proxy-port",
                           "16000",
                           "--admin-port",
                           "9000",
                           "--workers",
                           "4",
                           "--requests",
                           "cpu=50m,memory=32Mi",
                           "--limits=",
                           "--native-sidecar"});
  EXPECT_EQ(o.input_path, "app.yaml");
  EXPECT_EQ(o.image, "reg/sidetrace:1");
  EXPECT_EQ(o.service_name, "s");
  EXPECT_EQ(o.otlp_endpoint, "http://c:4317");
  EXPECT_EQ(o.sampler, "traceidratio");
  EXPECT_EQ(o.sampler_arg, "0.25");
  EXPECT_EQ(o.ignore_paths, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_EQ(o.port, "http");
  EXPECT_EQ(o.proxy_port, 16000);
  EXPECT_EQ(o.admin_port, 9000);
  EXPECT_EQ(o.workers, 4u);
  EXPECT_EQ(o.requests.size(), 2u);
  EXPECT_TRUE(o.limits.empty());
  EXPECT_TRUE(o.native_sidecar);
  EXPECT_FALSE(o.egress);
  EXPECT_FALSE(o.transparent);
  const InjectOptions e =
      parse({"--egress", "--transparent", "--egress-port=16002", "--redirect-ports", "all"});
  EXPECT_TRUE(e.egress);
  EXPECT_TRUE(e.transparent);
  EXPECT_EQ(e.egress_port, 16002);
  EXPECT_EQ(e.redirect_ports, "all");
  EXPECT_EQ(parse({}).egress_port, 15002);
  EXPECT_EQ(parse({}).redirect_ports, "80");
  EXPECT_EQ(parse({"-"}).input_path, "-");
  EXPECT_EQ(parse({}).input_path, "-");
  EXPECT_EQ(parse({}).image, "sidetrace:latest");
  EXPECT_TRUE(parse({"--help"}).show_help);
}

TEST(InjectArgs, BadValuesNameTheFlag) {
  EXPECT_EQ(parseError({"--transparent=yes"}), "--transparent: takes no value");
  EXPECT_EQ(parseError({"--redirect-ports", "80"}),
            "--redirect-ports: only with --transparent (the ports iptables redirects)");
  EXPECT_EQ(parseError({"--redirect-ports", "80,http"}),
            "--redirect-ports: expected ports such as 80,8080 or all, got '80,http'");
  EXPECT_EQ(parseError({"--redirect-ports", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"}),
            "--redirect-ports: at most 15 ports (iptables multiport), or all");
  EXPECT_EQ(parseError({"--egress", "--egress-port", "9901"}),
            "--egress-port: must differ from --proxy-port and --admin-port (9901)");
  EXPECT_EQ(parseError({"--bogus"}), "--bogus: unknown flag (see sidetrace inject --help)");
  EXPECT_EQ(parseError({"app.yaml"}), "unexpected argument 'app.yaml' (read a file with -f FILE)");
  EXPECT_EQ(parseError({"-f"}), "-f: missing value");
  EXPECT_EQ(parseError({"--port", "Http_2"}),
            "--port: expected a port number or a port name, got 'Http_2'");
  EXPECT_EQ(parseError({"--port", "a--b"}),
            "--port: expected a port number or a port name, got 'a--b'");
  EXPECT_EQ(parseError({"--proxy-port", "70000"}),
            "--proxy-port: expected a port number 1-65535, got '70000'");
  EXPECT_EQ(parseError({"--admin-port", "15001"}),
            "--admin-port: must differ from --proxy-port (15001)");
  EXPECT_EQ(parseError({"--requests", "cpu=lots"}),
            "--requests: expected RESOURCE=QUANTITY[,...] such as cpu=100m,memory=64Mi, got "
            "'cpu=lots'");
  EXPECT_EQ(parseError({"--sampler-arg", "2"}),
            "--sampler-arg: expected a sampling ratio between 0 and 1, got '2'");
  EXPECT_EQ(parseError({"--otlp-protocol", "udp"}),
            "--otlp-protocol: expected grpc, http/protobuf or http/json, got 'udp'");
  EXPECT_EQ(parseError({"--otlp-endpoint", "collector:4317"}).rfind("--otlp-endpoint: ", 0), 0u);
  EXPECT_EQ(parseError({"--ignore-path", "health"}),
            "--ignore-path: path must start with '/', got 'health'");
  EXPECT_EQ(parseError({"--native-sidecar=yes"}), "--native-sidecar: takes no value");
  EXPECT_NE(parseError({"--sampler", "sometimes"}).rfind("--sampler: ", 0), std::string::npos);
}

TEST(InjectArgs, ProcessRuleNeedsTheEgressListenerAndAUserItCanTell) {
  using PR = InjectOptions::ProcessRule;
  EXPECT_EQ(parse({}).process_rule, PR::kOff);
  EXPECT_EQ(parse({"--egress", "--process-rule=uid"}).process_rule, PR::kUid);
  EXPECT_EQ(parse({"--transparent", "--process-rule", "ptrace"}).process_rule, PR::kPtrace);
  EXPECT_EQ(
      parse({"--egress", "--process-rule=uid", "--process-rule-user=1000:3000"}).process_rule_user,
      (std::pair<int, int>{1000, 3000}));
  EXPECT_EQ(parseError({"--process-rule=uid"}),
            "--process-rule: only with --egress or --transparent (the rule infers the parents "
            "of the app's outbound calls, which go through the egress listener)");
  EXPECT_EQ(parseError({"--egress", "--process-rule=root"}),
            "--process-rule: expected uid or ptrace, got 'root'");
  EXPECT_EQ(parseError({"--transparent", "--process-rule=uid"})
                .rfind("--process-rule=uid: not with --transparent", 0),
            0u);
  EXPECT_EQ(parseError({"--egress", "--process-rule=ptrace", "--process-rule-user=1:1"}),
            "--process-rule-user: only with --process-rule=uid");
  EXPECT_EQ(parseError({"--egress", "--process-rule=uid", "--process-rule-user=1000"}),
            "--process-rule-user: expected UID:GID such as 1000:1000, got '1000'");
  EXPECT_EQ(parseError({"--egress", "--process-rule=uid", "--process-rule-user=1:99999999999"}),
            "--process-rule-user: expected UID:GID such as 1000:1000, got '1:99999999999'");
}

// Without the flag the pod is what it was (no shared process namespace, the image's user): the
// golden fixtures without --process-rule check that byte for byte.
TEST(Inject, ProcessRuleUidRunsTheSidecarAsTheAppsUser) {
  const std::string app = R"(apiVersion: v1
kind: Pod
metadata: { name: p }
spec:
  containers:
    - name: other
      image: side:1
      securityContext: { runAsUser: 7 }
    - name: app
      image: app:1
      ports: [ { containerPort: 8080 } ]
)";
  InjectOptions o = options();
  o.egress = true;
  o.process_rule = InjectOptions::ProcessRule::kUid;
  // Neither the app container nor the pod says: the image's USER is not visible here.
  EXPECT_EQ(errorOf([&] { run(app, o); }),
            "Pod/p: --process-rule=uid: container 'app' has no runAsUser in its or the pod's "
            "securityContext (the image's user is not visible here); give the app's user with "
            "--process-rule-user=UID:GID, or use --process-rule=ptrace");
  // runAsGroup matters as much: the kernel's ptrace read check compares both.
  const std::string with_uid = app + "      securityContext: { runAsUser: 1000 }\n";
  EXPECT_NE(errorOf([&] { run(with_uid, o); }).find("has no runAsGroup"), std::string::npos);
  const std::string with_pod_group = with_uid + "  securityContext: { runAsGroup: 3000 }\n";
  YAML::Node spec = docsOf(inject(with_pod_group, o))[0]["spec"];
  EXPECT_TRUE(spec["shareProcessNamespace"].as<bool>());
  YAML::Node sc = named(spec["containers"], "sidetrace")["securityContext"];
  EXPECT_EQ(sc["runAsUser"].as<int>(), 1000);
  EXPECT_EQ(sc["runAsGroup"].as<int>(), 3000);
  EXPECT_TRUE(sc["runAsNonRoot"].as<bool>());
  EXPECT_EQ(stringsOf(sc["capabilities"]["drop"]), (std::vector<std::string>{"ALL"}));
  EXPECT_FALSE(sc["capabilities"]["add"]);
  // --process-rule-user wins over what the manifests say.
  o.process_rule_user = std::pair<int, int>{42, 43};
  sc = named(docsOf(inject(app, o))[0]["spec"]["containers"], "sidetrace")["securityContext"];
  EXPECT_EQ(sc["runAsUser"].as<int>(), 42);
  EXPECT_EQ(sc["runAsGroup"].as<int>(), 43);
}

TEST(Inject, ProcessRulePtraceRunsTheSidecarAsRootWithTwoCapabilities) {
  InjectOptions o = options();
  o.egress = true;
  o.process_rule = InjectOptions::ProcessRule::kPtrace;
  const std::string app = R"(apiVersion: v1
kind: Pod
metadata: { name: p }
spec:
  containers:
    - { name: app, image: app:1, ports: [ { containerPort: 8080 } ] }
)";
  YAML::Node spec = docsOf(inject(app, o))[0]["spec"];
  EXPECT_TRUE(spec["shareProcessNamespace"].as<bool>());
  YAML::Node sc = named(spec["containers"], "sidetrace")["securityContext"];
  EXPECT_EQ(sc["runAsUser"].as<int>(), 0);
  EXPECT_EQ(sc["runAsGroup"].as<int>(), 65532);
  EXPECT_FALSE(sc["runAsNonRoot"].as<bool>());
  EXPECT_FALSE(sc["allowPrivilegeEscalation"].as<bool>());
  EXPECT_TRUE(sc["readOnlyRootFilesystem"].as<bool>());
  EXPECT_EQ(stringsOf(sc["capabilities"]["add"]),
            (std::vector<std::string>{"SYS_PTRACE", "DAC_READ_SEARCH"}));
  EXPECT_EQ(stringsOf(sc["capabilities"]["drop"]), (std::vector<std::string>{"ALL"}));
  // Without --transparent there is no redirect to exclude the sidecar's group from.
  EXPECT_FALSE(spec["initContainers"]);
}

// ---- golden files: realistic manifests, in and out -----------------------------------------
//
// tests/unit/config/inject/NAME.in.yaml is injected with options() (and the flags its first line
// names, see fixtureOptions) and compared with
// NAME.out.yaml, which CI also checks against the Kubernetes schemas. SIDETRACE_UPDATE_GOLDEN=1
// rewrites the .out.yaml files (review the diff).

std::string readFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fixture's first line may give the flags it is injected with: "# inject: --egress".
InjectOptions fixtureOptions(const std::string& text) {
  const std::string prefix = "# inject:";
  std::vector<std::string> args{"inject"};
  if (text.rfind(prefix, 0) == 0) {
    std::istringstream flags(text.substr(prefix.size(), text.find('\n') - prefix.size()));
    for (std::string flag; flags >> flag;) {
      args.push_back(flag);
    }
  }
  std::vector<const char*> argv;
  for (const auto& a : args) {
    argv.push_back(a.c_str());
  }
  InjectOptions o = parseInjectArgs(static_cast<int>(argv.size()), argv.data());
  o.image = options().image;
  return o;
}

TEST(InjectGolden, FixturesGiveTheirExpectedOutputAndStayPut) {
  const std::filesystem::path dir =
      std::filesystem::path(SIDETRACE_SOURCE_DIR) / "tests/unit/config/inject";
  const bool update = std::getenv("SIDETRACE_UPDATE_GOLDEN") != nullptr;
  int fixtures = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.size() < 8 || name.substr(name.size() - 8) != ".in.yaml") {
      continue;
    }
    ++fixtures;
    SCOPED_TRACE(name);
    std::filesystem::path golden = dir / (name.substr(0, name.size() - 8) + ".out.yaml");
    const std::string in = readFile(entry.path());
    const InjectOptions o = fixtureOptions(in);
    std::string out = inject(in, o);
    if (update) {
      std::ofstream(golden, std::ios::binary) << out;
    }
    EXPECT_EQ(out, readFile(golden)) << "SIDETRACE_UPDATE_GOLDEN=1 to accept";
    EXPECT_EQ(inject(out, o), out) << "injecting again changes something";
  }
  EXPECT_GE(fixtures, 5);
}

}  // namespace
}  // namespace sidetrace::config
