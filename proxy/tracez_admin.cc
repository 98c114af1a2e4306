#include "proxy/tracez_admin.h"

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "proxy/tracez_page.h"
#include "proxy/worker.h"
#include "tracing/tracez.h"

namespace sidetrace::proxy {

namespace {

// The value of `name` in a query string ("" when absent); values here need no %-decoding.
std::string_view queryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    }
  }
  return {};
}

struct Gathered {
  std::string spans;
  tracing::TracezMemory memory;
};

// Every worker's copy, oldest spans first per worker. A worker that has not answered within a
// second (it never blocks; only a stopping worker could) is left out.
Gathered gather(const std::vector<std::unique_ptr<Worker>>& workers) {
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = workers.size();
  std::vector<std::shared_ptr<Worker::RecentSpansCopy>> copies;
  for (const auto& w : workers) {
    copies.push_back(std::make_shared<Worker::RecentSpansCopy>());
    w->copyRecentSpans(copies.back(), [pending] {
      std::lock_guard lock(pending->mu);
      if (--pending->left == 0) {
        pending->cv.notify_all();
      }
    });
  }
  {
    std::unique_lock lock(pending->mu);
    pending->cv.wait_for(lock, std::chrono::seconds(1), [&] { return pending->left == 0; });
    if (pending->left != 0) {
      return {};  // the copies may still be written: read none of them
    }
  }
  Gathered g;
  g.memory.workers = workers.size();
  for (const auto& c : copies) {
    g.spans += c->spans;
    g.memory.bytes_held += c->bytes_held;
    g.memory.bytes_used += c->bytes_used;
    g.memory.too_large += c->too_large;
  }
  return g;
}

AdminResponse json(int status, std::string body) {
  return AdminResponse{status, "application/json", std::move(body)};
}

}  // namespace

AdminResponse tracezResponse(const filters::RequestHead& req,
                             const std::vector<std::unique_ptr<Worker>>& workers,
                             size_t max_bytes) {
  const std::string_view query = req.query();
  const bool want_json = queryParam(query, "format") == "json";
  if (max_bytes == 0) {
    return AdminResponse{404, "text/plain", "/tracez is off (admin.tracez.max_bytes: 0)\n"};
  }
  if (!want_json) {
    return AdminResponse{200, "text/html; charset=utf-8", std::string(kTracezPage)};
  }
  const std::string_view id_hex = queryParam(query, "trace_id");
  tracing::TraceId id;
  if (!id_hex.empty()) {
    id = tracing::TraceId::fromHex(id_hex);
    if (!id.valid()) {
      return json(400, "{\"error\":\"trace_id: expected 32 lower-case hex digits\"}\n");
    }
  }
  Gathered g = gather(workers);
  g.memory.max_bytes = max_bytes;
  const std::vector<tracing::SpanData> spans = tracing::decodeSpanRun(g.spans);
  if (!id.valid()) {
    return json(200, tracing::tracezSummaryJson(spans, g.memory));
  }
  if (auto trace = tracing::tracezTraceJson(spans, id)) {
    return json(200, std::move(*trace));
  }
  return json(404, "{\"error\":\"trace not held (evicted, unsampled or never seen)\"}\n");
}

}  // namespace sidetrace::proxy
