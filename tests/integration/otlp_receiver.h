#pragma once
// A fake OTLP/gRPC collector (Envoy's grpc_trace_exporter_integration_test idea): a grpc++
// TraceService on 127.0.0.1:0 that records every ExportTraceServiceRequest and can answer
// UNAVAILABLE a number of times first. grpc++ headers stay in the .cc.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sidetrace::it {

// One attribute value, flattened. `type` says which field is meaningful.
struct AttrValue {
  enum class Type { String, Bool, Int, Double, StringArray, Other } type = Type::Other;
  std::string s;
  std::vector<std::string> strings;  // StringArray (an ArrayValue of string values)
  bool b = false;
  int64_t i = 0;
  double d = 0;
};
using Attributes = std::map<std::string, AttrValue>;

// A span with its resource and scope, ids in lower-case hex ("" for an empty parent).
struct FlatSpan {
  std::string trace_id;
  std::string span_id;
  std::string parent_span_id;
  std::string trace_state;
  std::string name;
  int kind = 0;         // 1 internal, 2 server, 3 client, 4 producer, 5 consumer
  int status_code = 0;  // 0 unset, 1 ok, 2 error
  std::string status_message;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  uint32_t flags = 0;
  uint32_t dropped_attributes_count = 0;
  Attributes attributes;
  Attributes resource;
  std::string scope_name;
  std::vector<std::pair<std::string, std::string>> links;  // (trace_id, span_id), hex

  bool has(const std::string& key) const { return attributes.count(key) > 0; }
  // The string value, or "<missing>" / "<not a string>" so assertion messages say what happened.
  std::string str(const std::string& key) const;
  std::optional<int64_t> integer(const std::string& key) const;
  // A string-array attribute's values; nullopt when absent or of another type.
  std::optional<std::vector<std::string>> strings(const std::string& key) const;
  std::string resourceStr(const std::string& key) const;
  std::string describe() const;  // one line for failure messages
};

using grpc_status_code_t = int;  // grpc::StatusCode, without grpc++ in this header

class OtlpReceiver {
 public:
  // Listening on 127.0.0.1:port (0: an ephemeral port). A fixed port lets a test bring a
  // "collector" back where the proxy expects it.
  explicit OtlpReceiver(uint16_t port = 0);
  // Listening on a Unix socket at this path (endpoint(): "unix:PATH"), as a collector on the same
  // node can.
  explicit OtlpReceiver(const std::string& unix_socket_path);
  ~OtlpReceiver();
  OtlpReceiver(const OtlpReceiver&) = delete;
  OtlpReceiver& operator=(const OtlpReceiver&) = delete;

  uint16_t port() const;
  std::string endpoint() const;  // "http://127.0.0.1:<port>", or "unix:<path>"
  // The next n Export calls are answered UNAVAILABLE (and not recorded as spans).
  void failNext(int n);
  // Every Export call is answered with this code from now on (OK: record spans as usual).
  void answerAll(grpc_status_code_t code);
  // Successful calls answer with an OTLP partial success rejecting this many spans (0: none).
  void rejectInEachResponse(int64_t spans);
  // Every Export call is answered this long after it arrived (0: at once), whatever the answer; a
  // slow collector. Calls wait on their own server threads, so they overlap.
  void delayAnswers(std::chrono::milliseconds delay);
  size_t exportCalls() const;   // all calls, failed ones included
  size_t requestCount() const;  // recorded (successful) requests
  // Serialized size of each recorded request. (grpc++'s default limit refuses requests over
  // 4 MiB with RESOURCE_EXHAUSTED, as a collector does; those are not recorded.)
  std::vector<size_t> requestBytes() const;
  std::vector<FlatSpan> spans() const;
  // Waits until at least n spans were recorded; returns all recorded spans (possibly fewer).
  std::vector<FlatSpan> waitForSpans(size_t n, std::chrono::milliseconds timeout);
  // Metadata keys/values of the last successful call (lower-case keys).
  std::multimap<std::string, std::string> lastMetadata() const;
  // Stops serving; the port then refuses connections and stays held (RefusedPort) until the
  // receiver is destroyed, though a receiver constructed on that port may still take it back.
  void shutdown();

 private:
  OtlpReceiver(const std::string& address, const std::string& unix_socket_path);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string toHex(const std::string& bytes);
// Appends the spans of a serialized ExportTraceServiceRequest to out; false if it does not parse.
bool flattenOtlpRequest(const std::string& serialized, std::vector<FlatSpan>* out);
// Finds spans by kind (2 server, 3 client).
std::vector<FlatSpan> spansOfKind(const std::vector<FlatSpan>& spans, int kind);
// The first CLIENT span whose url.full contains `part` (e.g. a request's unique path), or null.
const FlatSpan* clientSpanWithUrl(const std::vector<FlatSpan>& spans, const std::string& part);

}  // namespace sidetrace::it
