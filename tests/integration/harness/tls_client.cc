#include "tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace remora::itest {

namespace {

std::string sslErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "connection closed" : out;
}

}  // namespace

TlsClient::TlsClient(uint16_t port, TlsClientOptions options, Duration timeout)
    : port_(port), options_(std::move(options)), timeout_(timeout) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_alpn_protos(ctx_, reinterpret_cast<const unsigned char*>("\x08http/1.1"), 9);
  if (!options_.ca_file.empty()) {
    SSL_CTX_load_verify_locations(ctx_, options_.ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  if (!options_.cert_file.empty()) {
    SSL_CTX_use_certificate_chain_file(ctx_, options_.cert_file.c_str());
    SSL_CTX_use_PrivateKey_file(ctx_, options_.key_file.c_str(), SSL_FILETYPE_PEM);
  }
}

TlsClient::~TlsClient() {
  close();
  if (session_ != nullptr) SSL_SESSION_free(session_);
  SSL_CTX_free(ctx_);
}

bool TlsClient::connect() {
  close();
  error_.clear();
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{};
  tv.tv_sec = timeout_.count() / 1000;
  tv.tv_usec = (timeout_.count() % 1000) * 1000;
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    error_ = std::string("connect: ") + std::strerror(errno);
    close();
    return false;
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  if (!options_.sni.empty()) {
    SSL_set_tlsext_host_name(ssl_, options_.sni.c_str());
    if (!options_.ca_file.empty()) SSL_set1_host(ssl_, options_.sni.c_str());
  }
  if (session_ != nullptr) SSL_set_session(ssl_, session_);
  ERR_clear_error();
  if (SSL_connect(ssl_) != 1) {
    error_ = "handshake: " + sslErrors();
    close();
    return false;
  }
  return true;
}

void TlsClient::close() {
  if (ssl_ != nullptr) {
    SSL_SESSION* s = SSL_get1_session(ssl_);
    if (s != nullptr) {
      if (session_ != nullptr) SSL_SESSION_free(session_);
      session_ = s;
    }
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

bool TlsClient::resumed() const { return ssl_ != nullptr && SSL_session_reused(ssl_) == 1; }

std::string TlsClient::peerCommonName() const {
  if (ssl_ == nullptr) return "";
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return "";
  char cn[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
  return cn;
}

bool TlsClient::readMore(std::string& buf) {
  char tmp[16384];
  ERR_clear_error();
  int n = SSL_read(ssl_, tmp, sizeof(tmp));
  if (n <= 0) {
    error_ = "read: " + sslErrors();
    return false;
  }
  buf.append(tmp, static_cast<size_t>(n));
  return true;
}

Response TlsClient::request(std::string_view method, std::string_view path,
                            std::string_view raw_headers) {
  Response r;
  if (ssl_ == nullptr && !connect()) {
    r.error = error_;
    return r;
  }
  std::string req = std::string(method) + " " + std::string(path) +
                    " HTTP/1.1\r\nhost: test.local\r\n" + std::string(raw_headers) + "\r\n";
  if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) <= 0) {
    r.error = "write: " + sslErrors();
    close();
    return r;
  }
  std::string buf;
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (!readMore(buf)) {
      r.error = error_;
      close();
      return r;
    }
  }
  std::string head = buf.substr(0, end);
  buf.erase(0, end + 4);
  size_t eol = head.find("\r\n");
  std::string status_line = head.substr(0, eol);
  if (status_line.size() >= 12) r.status = std::atoi(status_line.c_str() + 9);
  size_t pos = eol == std::string::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == std::string::npos) next = head.size();
    std::string line = head.substr(pos, next - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers.add(name, value);
    }
    pos = next + 2;
  }
  size_t length = static_cast<size_t>(std::atoll(r.header("content-length").c_str()));
  while (buf.size() < length) {
    if (!readMore(buf)) {
      r.error = error_;
      close();
      return r;
    }
  }
  r.body = buf.substr(0, length);
  r.complete = true;
  r.keep_alive = r.header("connection") != "close";
  if (!r.keep_alive) close();
  return r;
}

}  // namespace remora::itest
