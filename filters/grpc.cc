#include "filters/grpc.h"

#include <array>
#include <charconv>
#include <cstdint>

namespace sidetrace::filters {

bool isGrpcRequest(const RequestHead& req) {
  auto ct = req.headers.get("content-type");
  if (!ct || ct->size() < 16) {
    return false;
  }
  if (!iequals(ct->substr(0, 16), "application/grpc")) {
    return false;
  }
  if (ct->size() == 16) {
    return true;
  }
  const char next = (*ct)[16];
  return next == '+' || next == ';';
}

namespace {

// Bytes an identifier may continue with: letters, digits, '_'.
constexpr std::array<bool, 256> kIdentChar = [] {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) {
    t[c] = t[c - 'a' + 'A'] = true;
  }
  for (int c = '0'; c <= '9'; ++c) {
    t[c] = true;
  }
  t['_'] = true;
  return t;
}();

}  // namespace

// "/" package "." Service "/" Method: identifiers (a letter or '_', then letters, digits and '_')
// separated by dots, at least one package part, then one slash and one identifier. One pass; the
// tracing filter asks for every traced gRPC call's path.
std::optional<std::string_view> grpcMethodPath(std::string_view path) {
  if (path.size() < 2 || path[0] != '/') {
    return std::nullopt;
  }
  const std::string_view rpc = path.substr(1);
  const auto* p = reinterpret_cast<const unsigned char*>(rpc.data());
  const auto* end = p + rpc.size();
  int dots = 0;
  while (true) {
    if (p == end || !kIdentChar[*p] || (*p >= '0' && *p <= '9')) {
      return std::nullopt;  // an identifier must start here
    }
    do {
      ++p;
    } while (p != end && kIdentChar[*p]);
    if (p == end || *p != '.') {
      break;
    }
    ++dots;
    ++p;
  }
  if (dots == 0 || p == end || *p != '/') {
    return std::nullopt;
  }
  ++p;  // the method: one identifier, to the end
  if (p == end || !kIdentChar[*p] || (*p >= '0' && *p <= '9')) {
    return std::nullopt;
  }
  do {
    ++p;
  } while (p != end && kIdentChar[*p]);
  if (p != end) {
    return std::nullopt;
  }
  return rpc;
}

std::optional<std::chrono::milliseconds> parseGrpcTimeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) {
    return std::nullopt;
  }
  uint64_t n = 0;
  auto digits = value.substr(0, value.size() - 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return std::nullopt;
  }
  using std::chrono::milliseconds;
  switch (value.back()) {
    case 'H':
      return milliseconds(n * 3600 * 1000);
    case 'M':
      return milliseconds(n * 60 * 1000);
    case 'S':
      return milliseconds(n * 1000);
    case 'm':
      return milliseconds(n);
    case 'u':
      return milliseconds((n + 999) / 1000);
    case 'n':
      return milliseconds((n + 999999) / 1000000);
    default:
      return std::nullopt;
  }
}

int grpcStatusForHttp(int http_status) {
  switch (http_status) {
    case 200:
      return kGrpcOk;
    case 400:
      return kGrpcInternal;
    case 401:
      return 16;  // UNAUTHENTICATED
    case 403:
      return 7;  // PERMISSION_DENIED
    case 404:
      return kGrpcUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return kGrpcUnavailable;
    default:
      return kGrpcUnknown;
  }
}

int parseGrpcStatus(const HeaderMap& headers) {
  auto v = headers.get("grpc-status");
  if (!v || v->empty()) {
    return -1;
  }
  int code = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), code);
  if (ec != std::errc() || end != v->data() + v->size() || code < 0) {
    return -1;
  }
  return code;
}

bool grpcServerError(int code) {
  switch (code) {
    case 2:   // UNKNOWN
    case 4:   // DEADLINE_EXCEEDED
    case 12:  // UNIMPLEMENTED
    case 13:  // INTERNAL
    case 14:  // UNAVAILABLE
    case 15:  // DATA_LOSS
      return true;
    default:
      return false;
  }
}

}  // namespace sidetrace::filters
