#pragma once

// A test client for long-lived chunked responses (the discovery stream): sends one GET and hands
// out the body line by line as it arrives. Blocking, with timeouts; one per thread.

#include <llhttp.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace remora::control::test {

class StreamReader {
 public:
  StreamReader() = default;
  ~StreamReader();
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  // Connects to 127.0.0.1:port and sends `GET path` with `headers` ("name: value" lines). Waits
  // for the response head (status()). False if the connection or the head failed.
  bool open(uint16_t port, const std::string& path, const std::vector<std::string>& headers = {},
            std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  int status() const { return status_; }
  bool chunked() const { return chunked_; }
  // The next complete line of the body (without '\n'); nullopt on timeout or once the server
  // closed the stream and no line is left.
  std::optional<std::string> nextLine(std::chrono::milliseconds timeout);
  // True once the server closed the connection (waits up to `timeout` for it).
  bool waitClosed(std::chrono::milliseconds timeout);
  // The whole body received so far (for non-streaming error answers).
  const std::string& body() const { return body_; }
  void close();

 private:
  // Reads what is available within the deadline into the parser. False on EOF/error/timeout.
  bool pump(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  int status_ = 0;
  bool chunked_ = false;
  bool head_done_ = false;
  bool eof_ = false;
  std::string partial_;
  std::vector<std::string> lines_;
  size_t next_ = 0;
  std::string body_;
};

}  // namespace remora::control::test
