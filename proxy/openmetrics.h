#pragma once
// /metrics as OpenMetrics 1.0 text, for scrapers that ask for it (Accept:
// application/openmetrics-text): the only format that carries exemplars. The Prometheus text
// stays the default. The renderer writes one text (with exemplars when asked); this turns it
// into OpenMetrics: a counter family is named without `_total` in its HELP and TYPE lines (its
// samples keep it), and the exposition ends with `# EOF`.

#include <string>
#include <string_view>

namespace sidetrace::proxy {

inline constexpr std::string_view kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

// Whether an Accept header asks for OpenMetrics (and does not refuse it with q=0).
bool acceptsOpenMetrics(std::string_view accept);

std::string toOpenMetrics(std::string_view prometheus_text);

}  // namespace sidetrace::proxy
