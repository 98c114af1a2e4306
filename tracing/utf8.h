#pragma once
// Attribute strings come from clients (paths, user agents) and may be invalid UTF-8. OTLP string
// fields and JSON must be valid UTF-8 — a collector rejects the whole request otherwise — so the
// exporters repair them (invalid bytes become U+FFFD).

#include <string>
#include <string_view>

namespace sidetrace::tracing {

bool isValidUtf8(std::string_view s);
// Appends s to out, replacing each invalid byte with U+FFFD.
void appendValidUtf8(std::string_view s, std::string& out);
// The longest prefix of s of at most max_bytes that does not end inside a UTF-8 sequence: a cut
// that would split a character backs up to its first byte (span attribute value limits).
std::string_view truncateUtf8(std::string_view s, size_t max_bytes);
// Appends s as a quoted JSON string: repaired to valid UTF-8, quotes, backslashes and control
// characters escaped; with html_safe also <, > and & (as \u003c...), so the JSON stays inert
// inside an HTML page. (Console exporter, access log, /tracez.)
void appendJsonString(std::string& out, std::string_view s, bool html_safe = false);

}  // namespace sidetrace::tracing
