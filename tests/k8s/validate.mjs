#!/usr/bin/env node
// Validates Kubernetes manifests offline, as `kubectl apply` would judge them, and more:
//
//   node tests/k8s/validate.mjs [--sidetrace BIN] [--expect-invalid] PATH...
//     PATH: a YAML file (multi-document), a directory (its *.yaml, *.yml, *.json, as
//     `kubectl apply -f DIR` takes them) or - for standard input (e.g. `sidetrace inject` output).
//
// Each document is checked for:
//   - YAML: parsed as YAML 1.1, as kubectl's parser does: unquoted NO / on / 007 are a boolean and
//     a number, not strings (and 23:59 a number, which kubectl would take as a string: quote it);
//   - a known apiVersion and kind (kubernetes-models: the Kubernetes OpenAPI schemas);
//   - the schema: types, required fields, formats (quantities, int-or-string), and no unknown field
//     (kubectl's strict field validation);
//   - rules the API server or the kubelet apply beyond the schema: names, label values, container
//     names unique in a pod, port names (IANA service names, unique per container), a probe's
//     named port declared by its container, a controller's selector matching its template's
//     labels, a Service's named targetPort declared by the pods it selects (among the inputs);
//   - with --sidetrace BIN: every sidetrace container (named sidetrace, or whose image is
//     .../sidetrace[:tag]) is checked with `BIN --validate` and its args, its env (downward API
//     values filled in) and the ConfigMaps it mounts (when among the inputs); one that runs the
//     image's egress-iptables.sh (inject --transparent) with k8s/egress-iptables.sh --dry-run.
// A `kind: List` is not unpacked: it is reported as an unknown kind. Errors name the file and line. Exit 0 when every document passed, 1 otherwise.
// --expect-invalid (negative tests): every document preceded by a comment `# expect: TEXT` must
// fail with an error containing TEXT; every other document must pass.
// Without its npm modules (npm install in tests/k8s) it exits 77, ctest's skip, unless CI is set.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const inCi = !["", "0", "false"].includes(process.env.CI ?? "");
let models, YAML;
try {
  models = await import("kubernetes-models");
  YAML = await import("yaml");
} catch (e) {
  const why = `npm modules missing (cd tests/k8s && npm install): ${e.message.split("\n")[0]}`;
  console.log(inCi ? `FAIL: ${why} (CI is set: this test must run)` : `SKIPPED: ${why}`);
  process.exit(inCi ? 1 : 77);
}

// --- inputs ----------------------------------------------------------------------------------
const opts = { sidetrace: null, expectInvalid: false, paths: [] };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === "--sidetrace") opts.sidetrace = process.argv[++i];
  else if (a === "--expect-invalid") opts.expectInvalid = true;
  else opts.paths.push(a);
}
if (opts.paths.length === 0) {
  console.error("usage: validate.mjs [--sidetrace BIN] [--expect-invalid] FILE|DIR|- ...");
  process.exit(2);
}

function inputFiles(p) {
  if (p === "-") return [{ name: "<stdin>", text: fs.readFileSync(0, "utf8") }];
  if (fs.statSync(p).isDirectory()) {
    return fs
      .readdirSync(p)
      .filter((f) => /\.(ya?ml|json)$/.test(f))
      .sort()
      .flatMap((f) => inputFiles(path.join(p, f)));
  }
  return [{ name: p, text: fs.readFileSync(p, "utf8") }];
}

// Kubernetes' parser (sigs.k8s.io/yaml) is YAML 1.1 without timestamps: those stay strings.
const yamlOptions = {
  version: "1.1",
  customTags: (tags) => tags.filter((t) => t.tag !== "tag:yaml.org,2002:timestamp"),
};

// Every document of every input: { file, doc (yaml Document), lines (LineCounter), obj }.
function loadDocuments(files) {
  const out = [];
  for (const { name, text } of files) {
    const lines = new YAML.LineCounter();
    for (const doc of YAML.parseAllDocuments(text, { ...yamlOptions, lineCounter: lines })) {
      const d = { file: name, doc, lines, obj: null, errors: [] };
      for (const e of doc.errors) {
        const msg = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
        d.errors.push({ line: e.linePos?.[0]?.line, msg: `YAML: ${msg}` });
      }
      if (doc.errors.length === 0) {
        d.obj = doc.toJS({ maxAliasCount: 100 });
        if (d.obj === null || d.obj === undefined) continue; // an empty document
      }
      out.push(d);
    }
  }
  return out;
}

// --- the schemas -----------------------------------------------------------------------------
const modelByType = new Map(); // "apps/v1 Deployment" -> model class
(function collect(mod, depth) {
  for (const v of Object.values(mod)) {
    if (typeof v === "function" && v.apiVersion && v.kind)
      modelByType.set(`${v.apiVersion} ${v.kind}`, v);
    else if (v && typeof v === "object" && depth < 3) collect(v, depth + 1);
  }
})(models, 0);

// The schemas allow any extra field. To find them, the validator reads the document through
// proxies that record which fields it looked up: a field of an object the schema describes
// (one whose other fields were read) that was never read is unknown to the schema. Objects
// with no field read at all are free-form (e.g. x-kubernetes-preserve-unknown-fields) or inside
// an unknown field (reported there).
function schemaErrors(obj, model) {
  const read = new WeakMap();
  const proxies = new WeakMap();
  const wrap = (v) => {
    if (v === null || typeof v !== "object") return v;
    if (!proxies.has(v)) {
      read.set(v, new Set());
      proxies.set(
        v,
        new Proxy(v, {
          get(t, k, r) {
            if (typeof k === "string" && Object.hasOwn(t, k)) read.get(t).add(k);
            return wrap(Reflect.get(t, k, r));
          },
        }),
      );
    }
    return proxies.get(v);
  };
  const errors = [];
  try {
    model.prototype.validate.call(wrap(obj));
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: "", message: e.message }]) {
      const p = err.instancePath
        .split("/")
        .slice(1)
        .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
      errors.push({ path: p.map((s) => (/^\d+$/.test(s) ? Number(s) : s)), msg: err.message });
    }
  }
  (function unknown(v, p) {
    if (v === null || typeof v !== "object") return;
    if (Array.isArray(v)) return v.forEach((x, i) => unknown(x, [...p, i]));
    const seen = read.get(v);
    for (const [k, x] of Object.entries(v)) {
      if (seen && seen.size > 0 && !seen.has(k))
        errors.push({ path: [...p, k], msg: "unknown field", key: true });
      else unknown(x, [...p, k]);
    }
  })(obj, []);
  return errors;
}

// --- rules beyond the schema -----------------------------------------------------------------
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const isPortName = (s) =>
  s.length <= 15 &&
  /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(s) &&
  /[a-z]/.test(s) &&
  !s.includes("--");

// [path to the pod spec, pod spec, path to the pod template's metadata] of a workload, or null.
function podSpecOf(obj) {
  const at = (p) => p.reduce((v, k) => (v == null ? v : v[k]), obj);
  const paths = {
    Pod: ["spec"],
    PodTemplate: ["template", "spec"],
    CronJob: ["spec", "jobTemplate", "spec", "template", "spec"],
  };
  const p =
    paths[obj.kind] ??
    ([
      "Deployment",
      "StatefulSet",
      "DaemonSet",
      "ReplicaSet",
      "Job",
      "ReplicationController",
    ].includes(obj.kind)
      ? ["spec", "template", "spec"]
      : null);
  if (!p || !at(p)) return null;
  const meta = obj.kind === "Pod" ? ["metadata"] : [...p.slice(0, -1), "metadata"];
  return { path: p, spec: at(p), metaPath: meta, meta: at(meta) ?? {} };
}

const allContainers = (spec, base) =>
  ["initContainers", "containers", "ephemeralContainers"].flatMap((f) =>
    (spec[f] ?? []).map((c, i) => ({ c, path: [...base, f, i] })),
  );

function apiRules(obj, docs) {
  const errors = [];
  const meta = obj.metadata ?? {};
  const name = meta.name;
  if (typeof name === "string") {
    const ok =
      obj.kind === "Service"
        ? DNS1035_LABEL.test(name) && name.length <= 63
        : obj.kind === "Namespace"
          ? DNS1123_LABEL.test(name) && name.length <= 63
          : DNS1123_SUBDOMAIN.test(name) && name.length <= 253;
    if (!ok)
      errors.push({ path: ["metadata", "name"], msg: `'${name}' is not a valid ${obj.kind} name` });
  } else if (!meta.generateName) {
    errors.push({ path: ["metadata"], msg: "metadata.name is required" });
  }
  const pod = podSpecOf(obj);
  const labelMaps = [[["metadata", "labels"], meta.labels]];
  if (pod && obj.kind !== "Pod") labelMaps.push([[...pod.metaPath, "labels"], pod.meta.labels]);
  for (const [p, labels] of labelMaps) {
    for (const [k, v] of Object.entries(labels ?? {})) {
      if (typeof v === "string" && (v.length > 63 || !LABEL_VALUE.test(v)))
        errors.push({ path: [...p, k], msg: `label value '${v}' is not valid` });
    }
  }
  if (pod) {
    const names = new Set();
    for (const { c, path: cp } of allContainers(pod.spec, pod.path)) {
      if (names.has(c.name))
        errors.push({
          path: [...cp, "name"],
          msg: `container name '${c.name}' is used twice in the pod`,
        });
      names.add(c.name);
      const portNames = new Set();
      (c.ports ?? []).forEach((port, i) => {
        if (port.name === undefined) return;
        if (!isPortName(String(port.name)))
          errors.push({
            path: [...cp, "ports", i, "name"],
            msg: `port name '${port.name}' is not an IANA service name (a-z, 0-9, -; at most 15)`,
          });
        if (portNames.has(port.name))
          errors.push({
            path: [...cp, "ports", i, "name"],
            msg: `port name '${port.name}' is used twice in container '${c.name}'`,
          });
        portNames.add(port.name);
      });
      for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
        for (const how of ["httpGet", "tcpSocket"]) {
          const port = c[probe]?.[how]?.port;
          if (typeof port === "string" && !portNames.has(port)) {
            errors.push({
              path: [...cp, probe, how, "port"],
              msg: `probe port '${port}' is not a port name of container '${c.name}' (the probe would always fail)`,
            });
          }
        }
      }
    }
    const match = obj.spec?.selector?.matchLabels;
    if (match && ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"].includes(obj.kind)) {
      for (const [k, v] of Object.entries(match)) {
        if (pod.meta.labels?.[k] !== v)
          errors.push({
            path: ["spec", "selector", "matchLabels", k],
            msg: `selector ${k}=${v} does not match the template's labels`,
          });
      }
    }
  }
  if (obj.kind === "Service" && obj.spec?.selector) errors.push(...serviceTargets(obj, docs));
  return errors;
}

// A Service's named targetPorts must be port names of the pods it selects, when those pods'
// workloads are among the inputs (otherwise it gets no endpoints).
function serviceTargets(svc, docs) {
  const ns = svc.metadata?.namespace ?? "";
  const pods = docs
    .filter((d) => d.obj && (d.obj.metadata?.namespace ?? "") === ns)
    .map((d) => podSpecOf(d.obj))
    .filter(
      (p) => p && Object.entries(svc.spec.selector).every(([k, v]) => p.meta.labels?.[k] === v),
    );
  if (pods.length === 0) return [];
  const errors = [];
  (svc.spec.ports ?? []).forEach((sp, i) => {
    if (typeof sp.targetPort !== "string") return;
    for (const p of pods) {
      const named = (p.spec.containers ?? [])
        .concat(p.spec.initContainers ?? [])
        .some((c) => (c.ports ?? []).some((cp) => cp.name === sp.targetPort));
      if (!named) {
        errors.push({
          path: ["spec", "ports", i, "targetPort"],
          msg: `targetPort '${sp.targetPort}' is not a port name of the pods the Service selects`,
        });
        return;
      }
    }
  });
  return errors;
}

// --- sidetrace containers --------------------------------------------------------------------
const isSidetrace = (c) =>
  c.name === "sidetrace" || /(^|\/)sidetrace(:[^/]*)?(@.*)?$/.test(c.image ?? "");

// Kubernetes' $(VAR) expansion in env values, command and args; $$ is a literal $.
const expand = (s, env) =>
  String(s).replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v) =>
    m === "$$" ? "$" : v in env ? env[v] : m,
  );

function downwardValue(ref, obj, pod) {
  const f = ref.fieldPath;
  const m = /^metadata\.(labels|annotations)\['(.*)'\]$/.exec(f);
  if (m) return pod.meta[m[1]]?.[m[2]] ?? "";
  const values = {
    "metadata.name": `${obj.metadata?.name ?? "pod"}-0`,
    "metadata.namespace": obj.metadata?.namespace ?? "default",
    "metadata.uid": "00000000-0000-0000-0000-000000000000",
    "spec.nodeName": "node-0",
    "spec.serviceAccountName": "default",
    "status.podIP": "10.0.0.1",
    "status.hostIP": "10.0.0.2",
  };
  return values[f] ?? "";
}

// The transparent-egress init container (`sidetrace inject --transparent`): the image's copy of
// k8s/egress-iptables.sh, whose arguments the script itself checks (--dry-run changes nothing).
const redirectScript = path.join(
  path.dirname(new URL(import.meta.url).pathname),
  "../../k8s/egress-iptables.sh",
);
function redirectErrors(c, cp) {
  const argv = [...c.command.slice(1), ...(c.args ?? [])].map(String);
  const r = spawnSync("bash", [redirectScript, "--dry-run", ...argv], {
    encoding: "utf8",
    timeout: 30000,
  });
  if (r.status === 0) return [];
  const out = `${r.stderr}${r.stdout}`.split("\n").find((l) => l.trim()) ?? `exit ${r.status}`;
  return [{ path: [...cp, c.args ? "args" : "command"], msg: out }];
}

function sidetraceErrors(obj, docs, bin) {
  const pod = podSpecOf(obj);
  if (!pod) return [];
  const ns = obj.metadata?.namespace ?? "";
  const configMap = (name) =>
    docs.find(
      (d) =>
        d.obj?.kind === "ConfigMap" &&
        d.obj.metadata?.name === name &&
        (d.obj.metadata?.namespace ?? "") === ns,
    )?.obj;
  const errors = [];
  for (const { c, path: cp } of allContainers(pod.spec, pod.path)) {
    if (!isSidetrace(c)) continue;
    if (c.command && path.basename(String(c.command[0])) === "egress-iptables.sh") {
      errors.push(...redirectErrors(c, cp));
      continue;
    }
    if (c.command && path.basename(String(c.command[0])) !== "sidetrace") {
      errors.push({
        path: [...cp, "command"],
        msg: `sidetrace container runs '${c.command[0]}', not sidetrace: cannot check it`,
      });
      continue;
    }
    const env = { PATH: process.env.PATH };
    for (const from of c.envFrom ?? [])
      Object.assign(env, configMap(from.configMapRef?.name)?.data ?? {});
    for (const e of c.env ?? []) {
      const r = e.valueFrom;
      env[e.name] = r?.fieldRef
        ? downwardValue(r.fieldRef, obj, pod)
        : r?.configMapKeyRef
          ? (configMap(r.configMapKeyRef.name)?.data?.[r.configMapKeyRef.key] ?? "")
          : r
            ? "placeholder"
            : expand(e.value ?? "", env);
    }
    const argv = [...(c.command ?? []).slice(1), ...(c.args ?? [])].map((a) => expand(a, env));
    if (argv.length === 0) {
      errors.push({
        path: cp,
        msg: "sidetrace container without args: it would print --help and exit",
      });
      continue;
    }
    // The ConfigMaps it mounts, written where the args will find them.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "validate-sidetrace-"));
    const moved = [];
    for (const vm of c.volumeMounts ?? []) {
      const vol = (pod.spec.volumes ?? []).find((v) => v.name === vm.name);
      if (!vol?.configMap) continue;
      const cm = configMap(vol.configMap.name);
      if (!cm) {
        errors.push({
          path: cp,
          msg: `mounts ConfigMap '${vol.configMap.name}', which is not among the inputs: its files are not checked`,
        });
        continue;
      }
      const files = vol.configMap.items
        ? vol.configMap.items.map((it) => [it.path, cm.data?.[it.key]])
        : Object.entries(cm.data ?? {});
      const root = path.join(tmp, vm.mountPath);
      for (const [rel, data] of files) {
        if (vm.subPath && rel !== vm.subPath) continue;
        const dest = vm.subPath ? root : path.join(root, rel);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.writeFileSync(dest, data ?? "");
      }
      moved.push([vm.mountPath, root]);
    }
    const args = argv.map((a) =>
      moved.reduce(
        (s, [from, to]) =>
          s.replace(
            new RegExp(`(^|=)${from.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?=/|$)`),
            `$1${to}`,
          ),
        a,
      ),
    );
    const r = spawnSync(bin, ["--validate", ...args], { env, encoding: "utf8", timeout: 30000 });
    fs.rmSync(tmp, { recursive: true, force: true });
    if (r.status !== 0) {
      const out =
        `${r.stderr}${r.stdout}`.split("\n").find((l) => l.trim()) ??
        `exit ${r.status ?? r.signal}`;
      const shown = moved.reduce((s, [from, to]) => s.split(to).join(from), out);
      errors.push({
        path: [...cp, c.args ? "args" : "command"],
        msg: `sidetrace --validate: ${shown}`,
      });
    }
  }
  return errors;
}

// --- report ----------------------------------------------------------------------------------
// The line of PATH in the document: the key for an unknown field, else the value, else the
// nearest parent that exists.
function lineOf(d, p, key) {
  for (let n = p.length; n >= 0; n--) {
    const node = d.doc.getIn(p.slice(0, n), true);
    if (!node) continue;
    if (key && n === p.length - 1 && node.items) {
      const pair = node.items.find((it) => it.key?.value === p[n]);
      if (pair?.key?.range) return d.lines.linePos(pair.key.range[0]).line;
    }
    if (node.range) return d.lines.linePos(node.range[0]).line;
  }
  return d.lines.linePos(d.doc.range?.[0] ?? 0).line;
}
const showPath = (p) =>
  p
    .map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`))
    .join("")
    .replace(/^\./, "");

function expectation(d) {
  const c = d.doc.contents;
  const text = [d.doc.commentBefore, c?.commentBefore, c?.items?.[0]?.key?.commentBefore]
    .filter(Boolean)
    .join("\n");
  return /^\s*expect:\s*(.+)$/m.exec(text)?.[1].trim() ?? null;
}

const docs = loadDocuments(opts.paths.flatMap(inputFiles));
let passed = 0;
let failed = 0;
for (const d of docs) {
  const o = d.obj;
  let what = "document";
  if (d.errors.length === 0) {
    if (!o || typeof o !== "object" || Array.isArray(o) || !o.apiVersion || !o.kind) {
      d.errors.push({
        line: lineOf(d, []),
        msg: "not a Kubernetes object (apiVersion and kind are required)",
      });
    } else {
      what = `${o.kind} ${o.metadata?.name ?? ""}`.trim();
      const model = modelByType.get(`${o.apiVersion} ${o.kind}`);
      const found = model
        ? [...schemaErrors(o, model), ...apiRules(o, docs)]
        : [{ path: ["kind"], msg: `unknown apiVersion/kind: ${o.apiVersion} ${o.kind}` }];
      if (model && opts.sidetrace) found.push(...sidetraceErrors(o, docs, opts.sidetrace));
      for (const e of found)
        d.errors.push({
          line: lineOf(d, e.path, e.key),
          msg: e.path.length ? `${showPath(e.path)}: ${e.msg}` : e.msg,
        });
    }
  }
  const where = `${d.file}:${lineOf(d, [])}`;
  const expect = opts.expectInvalid ? expectation(d) : null;
  const errs = d.errors.map((e) => `  ${d.file}:${e.line ?? "?"}: ${e.msg}`);
  let ok;
  if (expect) {
    ok = d.errors.some((e) => e.msg.includes(expect));
    console.log(`${ok ? "rejected" : "FAIL"} ${where} ${what} (expected: ${expect})`);
    if (!ok)
      console.log(errs.length ? errs.join("\n") : "  accepted, but should have been rejected");
    else console.log(errs.join("\n"));
  } else {
    ok = d.errors.length === 0;
    console.log(`${ok ? "ok  " : "FAIL"} ${where} ${what}`);
    if (!ok) console.log(errs.join("\n"));
  }
  ok ? passed++ : failed++;
}
if (docs.length === 0) {
  console.log("no documents");
  failed++;
}
console.log(`validate: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
