#include "upstream/tls_files.h"

#include <openssl/err.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace sidetrace::upstream {

void tlsConfigError(const std::string& key, const std::string& msg) {
  throw std::runtime_error(key + ": " + msg);
}

std::string opensslReason() {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) {
    last = e;
  }
  if (last == 0) {
    return "unknown OpenSSL error";
  }
  char buf[256];
  ERR_error_string_n(last, buf, sizeof buf);
  return buf;
}

TlsFile::TlsFile(const std::string& path, const std::string& key)
    : f(std::fopen(path.c_str(), "r")) {
  if (f == nullptr) {
    tlsConfigError(key, "cannot read '" + path + "': " + std::strerror(errno));
  }
}

TlsFile::~TlsFile() {
  std::fclose(f);
}

}  // namespace sidetrace::upstream
