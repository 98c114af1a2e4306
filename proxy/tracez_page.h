#pragma once
// The /tracez HTML page: one self-contained document (inline CSS and JS, no external assets, so
// it works in a pod without internet) that fetches /tracez?format=json and renders the route
// table, the latest / slowest / failed traces and, for #trace=<id> (or ?trace_id=<id>), a
// waterfall of the trace's spans; clicking a span shows its attributes. Data is inserted with
// textContent only, never as HTML: span names and attributes come from clients.

#include <string_view>

namespace sidetrace::proxy {

extern const std::string_view kTracezPage;

}  // namespace sidetrace::proxy
