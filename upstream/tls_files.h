#pragma once
// Reading TLS material named in the config, shared by listener TLS (proxy/tls_context.cc) and
// cluster TLS (upstream/tls_client_context.cc): errors name the config key and say why in words
// (a missing file, OpenSSL's most specific reason), which OpenSSL's own codes do not.

#include <cstdio>
#include <string>

namespace sidetrace::upstream {

// Throws std::runtime_error("key: msg").
[[noreturn]] void tlsConfigError(const std::string& key, const std::string& msg);
// The most specific reason OpenSSL queued (its last error); clears the queue.
std::string opensslReason();

// Opens `path` for reading, or throws naming `key` with errno's text (missing file, permissions).
struct TlsFile {
  TlsFile(const std::string& path, const std::string& key);
  ~TlsFile();
  TlsFile(const TlsFile&) = delete;
  TlsFile& operator=(const TlsFile&) = delete;
  FILE* f;
};

}  // namespace sidetrace::upstream
