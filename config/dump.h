#pragma once
// The effective config as JSON, for the admin /config_dump endpoint (Envoy's habit): what the
// proxy is really running after defaults, OTEL_* env, the file and flags were merged. Keys mirror
// the YAML keys (ARCHITECTURE §5). Secrets never leave the process: exporter header values, the
// TLS private key path and any password in a URL are replaced by "[redacted]".

#include <string>

#include "config/config.h"

namespace sidetrace::config {

// One JSON object, pretty-printed with two-space indents, ending in '\n'.
std::string dumpConfigJson(const Config& cfg);

// "15s", "250ms", "2m": the shortest exact spelling that parseDuration reads back.
std::string formatDuration(Duration d);

}  // namespace sidetrace::config
