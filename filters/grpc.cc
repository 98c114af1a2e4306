#include "filters/grpc.h"

#include <charconv>

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

bool isIdentifier(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) {
    return false;
  }
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<std::string_view> grpcMethodPath(std::string_view path) {
  if (path.size() < 2 || path[0] != '/') {
    return std::nullopt;
  }
  std::string_view rpc = path.substr(1);
  size_t slash = rpc.find('/');
  if (slash == std::string_view::npos || !isIdentifier(rpc.substr(slash + 1))) {
    return std::nullopt;
  }
  std::string_view service = rpc.substr(0, slash);
  if (service.find('.') == std::string_view::npos) {
    return std::nullopt;  // a package is part of the shape
  }
  while (!service.empty()) {
    size_t dot = service.find('.');
    if (!isIdentifier(service.substr(0, dot))) {
      return std::nullopt;
    }
    if (dot == std::string_view::npos) {
      break;
    }
    service.remove_prefix(dot + 1);
    if (service.empty()) {
      return std::nullopt;  // a trailing dot
    }
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
