#pragma once
// GET /tracez on the admin listener: the recent sampled spans every worker kept
// (tracing/recent_spans.h), merged on the admin thread. The workers are asked by posting to
// their io_context (as a reload switches them), so their data path takes no lock; the admin
// thread waits for the copies (a worker never blocks, so that is a few microseconds per worker
// plus a copy of at most its share of admin.tracez.max_bytes).
//
//   /tracez                         the HTML page (tracez_page.h), which reads the JSON below
//   /tracez?format=json             routes, latest / slowest / failed traces (tracing/tracez.h)
//   /tracez?format=json&trace_id=X  one trace's spans (32 hex digits; 404 when not held)

#include <memory>
#include <vector>

#include "filters/http_message.h"
#include "proxy/admin.h"

namespace sidetrace::proxy {

class Worker;

AdminResponse tracezResponse(const filters::RequestHead& req,
                             const std::vector<std::unique_ptr<Worker>>& workers, size_t max_bytes);

}  // namespace sidetrace::proxy
