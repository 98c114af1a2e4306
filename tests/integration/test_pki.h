#pragma once
// Throwaway X.509 material for TLS tests, made with OpenSSL's C API at test time (nothing checked
// in, nothing that expires in the repository): a CA, and a server (or client) certificate it
// signed.

#include <string>
#include <vector>

namespace sidetrace::it {

struct TestPki {
  std::string ca_file;    // PEM: the CA certificate (what a client trusts)
  std::string cert_file;  // PEM: the server certificate
  std::string key_file;   // PEM: the server's private key
};

// Writes <dir>/<prefix>-{ca,cert,key}.pem: a fresh P-256 CA named `ca_name`, and a certificate
// it signed for `dns_names` and `ips` (subjectAltName; CN = the first DNS name), valid from an
// hour ago for a day, with extended key usage `eku` ("serverAuth", or "clientAuth" for a client
// certificate). Throws std::runtime_error if OpenSSL fails.
TestPki makeTestPki(const std::string& dir, const std::string& prefix, const std::string& ca_name,
                    const std::vector<std::string>& dns_names, const std::vector<std::string>& ips,
                    const std::string& eku = "serverAuth");

}  // namespace sidetrace::it
