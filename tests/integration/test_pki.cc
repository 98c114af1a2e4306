#include "tests/integration/test_pki.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace sidetrace::it {

namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(FILE* f) const { std::fclose(f); }
};
using Key = std::unique_ptr<EVP_PKEY, Free>;
using Cert = std::unique_ptr<X509, Free>;

void check(bool ok, const char* what) {
  if (!ok) {
    throw std::runtime_error(std::string("test PKI: ") + what + " failed");
  }
}

Key newKey() {
  Key key(EVP_EC_gen("P-256"));
  check(key != nullptr, "EC key generation");
  return key;
}

void addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, Free> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  check(X509_add_ext(cert, ext.get(), -1) == 1, "X509_add_ext");
}

// A certificate for `key` named `cn`; self-signed when issuer is null.
Cert newCert(EVP_PKEY* key, const std::string& cn, long serial, X509* issuer) {
  Cert cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  return cert;
}

void sign(X509* cert, EVP_PKEY* key) {
  check(X509_sign(cert, key, EVP_sha256()) > 0, "X509_sign");
}

void writeCert(const std::string& path, X509* cert) {
  std::unique_ptr<FILE, Free> f(std::fopen(path.c_str(), "w"));
  check(f != nullptr && PEM_write_X509(f.get(), cert) == 1, "writing a certificate");
}

void writeKey(const std::string& path, EVP_PKEY* key) {
  std::unique_ptr<FILE, Free> f(std::fopen(path.c_str(), "w"));
  check(f != nullptr &&
            PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
        "writing a key");
}

}  // namespace

TestPki makeTestPki(const std::string& dir, const std::string& prefix, const std::string& ca_name,
                    const std::vector<std::string>& dns_names, const std::vector<std::string>& ips,
                    const std::string& eku) {
  Key ca_key = newKey();
  Cert ca = newCert(ca_key.get(), ca_name, 1, nullptr);
  addExt(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE");
  addExt(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  addExt(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
  sign(ca.get(), ca_key.get());

  Key key = newKey();
  Cert cert = newCert(key.get(), dns_names.empty() ? "server" : dns_names[0], 2, ca.get());
  std::string san;
  for (const auto& d : dns_names) {
    san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  }
  for (const auto& ip : ips) {
    san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  }
  addExt(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
  addExt(cert.get(), ca.get(), NID_key_usage, "critical,digitalSignature");
  addExt(cert.get(), ca.get(), NID_ext_key_usage, eku);
  addExt(cert.get(), ca.get(), NID_authority_key_identifier, "keyid:always");
  if (!san.empty()) {
    addExt(cert.get(), ca.get(), NID_subject_alt_name, san);
  }
  sign(cert.get(), ca_key.get());

  TestPki pki{dir + "/" + prefix + "-ca.pem", dir + "/" + prefix + "-cert.pem",
              dir + "/" + prefix + "-key.pem"};
  writeCert(pki.ca_file, ca.get());
  writeCert(pki.cert_file, cert.get());
  writeKey(pki.key_file, key.get());
  return pki;
}

}  // namespace sidetrace::it
