#pragma once

// A client connection: llhttp parses requests, each complete header block becomes an ActiveStream.
// HTTP/1.1 runs one request at a time per connection; pipelined bytes are held until the response
// in flight is done. Timers: idle (between requests), request headers (slowloris guard), and the
// route timeout of the stream in flight share one uv timer, since only one is ever armed.

#include <llhttp.h>
#include <uv.h>

#include <memory>
#include <string>

#include "snapshot.h"
#include "stream.h"
#include "uv_util.h"
#include "worker.h"

namespace remora {

class DownstreamConnection : public WriteCallbacks {
 public:
  // Reasons reading from the client is paused; reading resumes when none is left.
  static constexpr uint32_t kReadPausedRequestDone = 1;  // waiting for the response
  static constexpr uint32_t kReadPausedUpstreamFull = 2;  // upstream is not draining the body

  DownstreamConnection(Worker& worker, std::string listener_name);
  ~DownstreamConnection() override;

  // Accepts from `server`. On failure the connection closes itself.
  void accept(uv_stream_t* server);
  // Closes now (pending writes are dropped).
  void close();
  // Drain: close if idle, otherwise close after the current response.
  void drain();

  // Used by ActiveStream.
  Worker& worker() { return worker_; }
  // True while the client's latest bytes are being parsed: whatever the request's stream writes
  // upstream meanwhile can wait for ActiveStream::flushUpstream at the end of the parse.
  bool parsingInput() const { return parsing_input_; }
  int write(const uv_buf_t* bufs, unsigned n) { return writer_.write(bufs, n); }
  size_t pendingWriteBytes() const { return writer_.pendingBytes(); }
  void readDisable(uint32_t reason, bool disable);
  void armRouteTimer(std::chrono::milliseconds timeout);
  // The upstream answered the stream's upgrade with 101: from now on the client's bytes go to
  // stream_->onTunnelData (those that came behind the request first), no more HTTP is parsed,
  // and listener idle_timeout bounds a silence in both directions.
  void startTunnel();
  // Bytes moved through the tunnel (from the upstream): the connection is not idle.
  void noteTunnelActivity() { last_client_io_ms_ = uv_now(worker_.loop()); }
  void onStreamComplete(bool close_connection);
  const std::string& peerAddress() const { return peer_address_; }
  const std::string& peerIp() const { return peer_ip_; }
  bool isTls() const { return tls_ != nullptr; }
  // The verified client certificate (mTLS listeners), else null.
  const tls::PeerIdentity* peerIdentity() const {
    return peer_identity_ != nullptr && peer_identity_->verified ? peer_identity_ : nullptr;
  }

  // WriteCallbacks
  void onWriteProgress() override;
  void onWriteError(int err) override;

 private:
  enum class TimerMode { None, Idle, RequestHeaders, Route, Linger };

  const ListenerInfo* currentListener();
  void setTimer(TimerMode mode, std::chrono::milliseconds timeout);
  void processInput(const char* data, size_t len);
  void onTlsInput(const char* data, size_t len);
  void onTlsEstablished();
  void onPeerEof();
  void finishAfterPeerClosed();
  void processPipelined();
  void onParseError(llhttp_errno_t err);
  void localReplyAndClose(int status, std::string_view reason);
  void closeAfterFlush();
  void startLingeringClose();
  void updateReading();
  void commitHeader();
  // The head is refused (a size limit, obs-fold): answered with `status` once llhttp stops.
  int refuseHead(int status, const char* reason);
  // While a stream is in flight, idle_timeout also bounds how long the client may leave it
  // waiting: not sending the rest of its request body, or not reading the response.
  void armStreamIdleTimer();
  void onStreamIdleTimeout();

  static void onAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void onTimer(uv_timer_t* timer);
  static void onShutdown(uv_shutdown_t* req, int status);
  static void onClose(uv_handle_t* handle);

  static int onMessageBegin(llhttp_t* p);
  static int onUrl(llhttp_t* p, const char* at, size_t len);
  static int onHeaderField(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int onHeadersComplete(llhttp_t* p);
  static int onBody(llhttp_t* p, const char* at, size_t len);
  static int onMessageComplete(llhttp_t* p);

  Worker& worker_;
  std::string listener_name_;
  SnapshotConstSharedPtr snapshot_;  // the snapshot `listener_` belongs to
  const ListenerInfo* listener_ = nullptr;
  ListenerStats* listener_stats_ = nullptr;  // stats outlive snapshots; counted at accept
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uv_shutdown_t shutdown_req_;
  int open_handles_ = 0;
  StreamWriter writer_;
  llhttp_t parser_;
  static const llhttp_settings_t kParserSettings;
  TimerMode timer_mode_ = TimerMode::None;
  uint64_t timer_deadline_ = 0;  // uv_now() when timer_mode_ expires
  uint64_t timer_due_ = 0;       // uv_now() when the armed uv timer fires

  // The request being parsed.
  RequestHead head_;
  bool keep_alive_ = true;  // of the request handed to stream_
  std::string field_;
  std::string value_;
  bool in_value_ = false;
  size_t header_bytes_ = 0;
  size_t max_header_bytes_ = 60 * 1024;
  int refused_status_ = 0;  // 400, 414 or 431 once refuseHead() was called, for onParseError()
  const char* refused_reason_ = nullptr;
  // The buffer llhttp is parsing (obs-fold detection, an unknown method's 501), and the last
  // byte other than SP/HT before it and up to the end of it.
  const char* input_begin_ = nullptr;
  size_t input_len_ = 0;
  char non_ws_before_input_ = 0;
  char non_ws_tail_ = 0;
  bool in_message_ = false;

  std::unique_ptr<ActiveStream> stream_;
  std::unique_ptr<Timer> stream_idle_timer_;  // created with the first stream
  uint64_t last_client_io_ms_ = 0;            // uv_now() of the last read or write progress
  std::string pipelined_;  // bytes received after a complete request, parsed after its response
  bool parser_paused_ = false;
  bool parsing_input_ = false;  // inside processInput's llhttp_execute
  bool tunnel_ = false;        // upgraded (startTunnel): raw bytes both ways
  bool peer_closed_ = false;   // the client half-closed (EOF)
  bool closing_ = false;       // close requested: no more parsing, no new streams
  bool close_after_flush_ = false;
  bool lingering_ = false;
  bool draining_ = false;
  bool reading_ = false;
  uint32_t read_paused_ = 0;
  std::string peer_address_;
  std::string peer_ip_;
  tls::SessionPtr tls_;  // set on TLS listeners; writer_ encrypts through it
  const tls::PeerIdentity* peer_identity_ = nullptr;  // owned by tls_, set after the handshake
};

}  // namespace remora
