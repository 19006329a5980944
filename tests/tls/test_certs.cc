#include "test_certs.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <stdexcept>

namespace remora::testing {

namespace {

EVP_PKEY* newKey() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) throw std::runtime_error("EVP_EC_gen failed");
  return key;
}

void addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) throw std::runtime_error("bad extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

X509* newCert(EVP_PKEY* key, const std::string& cn, long serial, int days) {
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(days) * 86400);
  if (days < 0) X509_gmtime_adj(X509_getm_notBefore(cert), static_cast<long>(days - 1) * 86400);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return cert;
}

void writePem(const std::filesystem::path& path, X509* cert, EVP_PKEY* key) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + path.string());
  if (cert != nullptr) PEM_write_X509(f, cert);
  if (key != nullptr) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

long nextSerial() {
  static long serial = 1000;
  return ++serial;
}

}  // namespace

TestCa::TestCa(const std::string& common_name) {
  EVP_PKEY* key = newKey();
  X509* cert = newCert(key, common_name, nextSerial(), 3650);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  addExt(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
  addExt(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  addExt(cert, cert, NID_subject_key_identifier, "hash");
  X509_sign(cert, key, EVP_sha256());
  key_ = key;
  cert_ = cert;
}

TestCa::~TestCa() {
  EVP_PKEY_free(static_cast<EVP_PKEY*>(key_));
  X509_free(static_cast<X509*>(cert_));
}

std::string TestCa::writeCert(const std::filesystem::path& dir, const std::string& name) const {
  std::filesystem::path p = dir / (name + ".pem");
  writePem(p, static_cast<X509*>(cert_), nullptr);
  return p.string();
}

IssuedCert TestCa::issue(const std::filesystem::path& dir, const std::string& name,
                         const std::vector<std::string>& sans, int days) const {
  auto* ca_cert = static_cast<X509*>(cert_);
  EVP_PKEY* key = newKey();
  X509* cert = newCert(key, name, nextSerial(), days);
  X509_set_issuer_name(cert, X509_get_subject_name(ca_cert));
  addExt(cert, ca_cert, NID_basic_constraints, "critical,CA:FALSE");
  addExt(cert, ca_cert, NID_key_usage, "critical,digitalSignature,keyEncipherment");
  addExt(cert, ca_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  if (!sans.empty()) {
    std::string joined;
    for (const auto& s : sans) joined += (joined.empty() ? "" : ",") + s;
    addExt(cert, ca_cert, NID_subject_alt_name, joined);
  }
  X509_sign(cert, static_cast<EVP_PKEY*>(key_), EVP_sha256());
  IssuedCert out{(dir / (name + ".pem")).string(), (dir / (name + ".key")).string()};
  writePem(out.cert_file, cert, nullptr);
  writePem(out.key_file, nullptr, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

}  // namespace remora::testing
