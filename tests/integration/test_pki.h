#pragma once
// Throwaway X.509 material for TLS tests, made with OpenSSL's C API at test time (nothing checked
// in, nothing that expires in the repository): a CA, and a server certificate it signed.

#include <string>
#include <vector>

namespace sidetrace::it {

struct TestPki {
  std::string ca_file;    // PEM: the CA certificate (what a client trusts)
  std::string cert_file;  // PEM: the server certificate
  std::string key_file;   // PEM: the server's private key
};

// Writes <dir>/<prefix>-{ca,cert,key}.pem: a fresh P-256 CA named `ca_name`, and a server
// certificate for `dns_names` and `ips` (subjectAltName), valid from an hour ago for a day.
// Throws std::runtime_error if OpenSSL fails.
TestPki makeTestPki(const std::string& dir, const std::string& prefix, const std::string& ca_name,
                    const std::vector<std::string>& dns_names, const std::vector<std::string>& ips);

}  // namespace sidetrace::it
