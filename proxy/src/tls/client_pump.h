#pragma once

// TLS for the proxy's small one-request clients (health checks, the discovery stream and its
// ACKs): drives a client Session over a connected uv stream, sends what it produces with owned
// writes, holds the request until the handshake is done and hands back plaintext.

#include <uv.h>

#include <string>
#include <string_view>

#include "tls/tls.h"

namespace remora::tls {

class ClientPump {
 public:
  enum class Result { Ok, Closed, Error };

  // `stream` must outlive the pump's writes, as for any uv_write (close it after the pump).
  ClientPump(SessionPtr session, uv_stream_t* stream)
      : session_(std::move(session)), stream_(stream) {}

  // Once connected: starts the handshake. False on failure (error()).
  bool start();
  // Sends `data` as soon as the handshake is done (at once if it is).
  bool send(std::string_view data);
  // Bytes read from the socket: plaintext is appended to `out`. Closed: the server sent
  // close_notify. Error: see error().
  Result onRead(const char* data, size_t len, std::string& out);
  const std::string& error() const { return session_->error(); }

 private:
  void flush();

  SessionPtr session_;
  uv_stream_t* stream_;
  std::string queued_;  // plaintext waiting for the handshake
};

}  // namespace remora::tls
