#pragma once

// Test PKI made with OpenSSL at test time (no checked-in keys that expire, no openssl CLI):
// a CA, then leaf certificates it signs, written as PEM files.
//
//   TestCa ca("mesh-ca");
//   auto server = ca.issue(dir, "orders", {"DNS:orders.internal"});
//   // server.cert_file, server.key_file, ca.writeCert(dir) -> ca.pem

#include <filesystem>
#include <string>
#include <vector>

namespace remora::testing {

struct IssuedCert {
  std::string cert_file;
  std::string key_file;
};

class TestCa {
 public:
  // A self-signed CA with a fresh EC P-256 key.
  explicit TestCa(const std::string& common_name);
  ~TestCa();
  TestCa(const TestCa&) = delete;
  TestCa& operator=(const TestCa&) = delete;

  // Writes the CA certificate to dir/<name>.pem and returns the path.
  std::string writeCert(const std::filesystem::path& dir, const std::string& name = "ca") const;
  // A leaf certificate signed by this CA, valid from one hour ago for `days` days (negative: an
  // expired one). `sans` are "DNS:x", "URI:y" or "IP:1.2.3.4". Written to dir/<name>.{pem,key}.
  IssuedCert issue(const std::filesystem::path& dir, const std::string& name,
                   const std::vector<std::string>& sans, int days = 30) const;

 private:
  void* key_;   // EVP_PKEY*
  void* cert_;  // X509*
};

}  // namespace remora::testing
