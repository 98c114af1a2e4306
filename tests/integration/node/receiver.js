'use strict';
// A fake OTLP/gRPC collector that decodes with the *official* opentelemetry-proto files shipped in
// @opentelemetry/otlp-grpc-exporter-base (build/protos/), independent of sidetrace's own .proto
// text. Usage: node receiver.js [port] [json-out-file]
// stdout: "PORT <n>" once listening, then one tab-separated line per span:
//   SPAN <trace_id> <span_id> <parent_span_id> <kind> <name> <http.request.method> <service.name>
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const protoRoot = path.join(path.dirname(require.resolve(
    '@opentelemetry/otlp-grpc-exporter-base/package.json')), 'build', 'protos');
const def = protoLoader.loadSync(
    'opentelemetry/proto/collector/trace/v1/trace_service.proto',
    {includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, oneofs: true});
const pkg = grpc.loadPackageDefinition(def);
const service = pkg.opentelemetry.proto.collector.trace.v1.TraceService.service;

const port = Number(process.argv[2] || 0);
const jsonOut = process.argv[3];

function hex(buf) { return Buffer.from(buf || []).toString('hex'); }

function value(v) {
  if (!v) return null;
  switch (v.value) {
    case 'string_value': return v.string_value;
    case 'int_value': return Number(v.int_value);
    case 'bool_value': return v.bool_value;
    case 'double_value': return v.double_value;
    default: return v[v.value] === undefined ? null : v[v.value];
  }
}

function attrs(list) {
  const out = {};
  for (const kv of list || []) out[kv.key] = value(kv.value);
  return out;
}

function clean(s) { return String(s === null || s === undefined ? '' : s).replace(/[\t\n]/g, ' '); }

const server = new grpc.Server();
server.addService(service, {
  Export(call, callback) {
    const flat = [];
    for (const rs of call.request.resource_spans || []) {
      const resource = attrs(rs.resource && rs.resource.attributes);
      for (const ss of rs.scope_spans || []) {
        for (const s of ss.spans || []) {
          flat.push({
            trace_id: hex(s.trace_id), span_id: hex(s.span_id),
            parent_span_id: hex(s.parent_span_id), name: s.name, kind: s.kind,
            status: s.status ? s.status.code : null, attributes: attrs(s.attributes), resource,
          });
        }
      }
    }
    for (const f of flat) {
      process.stdout.write(['SPAN', f.trace_id, f.span_id, f.parent_span_id, f.kind, f.name,
        f.attributes['http.request.method'], f.resource['service.name']].map(clean).join('\t') +
        '\n');
      if (jsonOut) fs.appendFileSync(jsonOut, JSON.stringify(f) + '\n');
    }
    callback(null, {});
  },
});

server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    process.stderr.write(`bind failed: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`PORT ${bound}\n`);
});

process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
