#pragma once

// Upstream HTTP/1.1 connections and the per-worker, per-endpoint pool that keeps them alive.
//
// A connection serves one request at a time. The pool hands out an idle connection when it has one
// (checking nothing more: an idle connection the upstream closed was already noticed by its read
// callback and dropped), opens a new one while under the cluster's max_connections, and otherwise
// queues the request up to max_pending_requests.

#include <llhttp.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>

#include "http/headers.h"
#include "snapshot.h"
#include "uv_util.h"

namespace remora {

class ConnectionPool;
class UpstreamConnection;
class Worker;

enum class UpstreamFailure {
  ConnectFailure,   // refused, unreachable, or connect timeout
  ConnectTimeout,
  PoolOverflow,     // max_pending_requests reached
  Reset,            // closed or reset before the response ended
  ProtocolError,    // the upstream sent something that is not HTTP/1.1
};

// The user of a connection (a request's upstream attempt). Callbacks never delete the connection.
class UpstreamClient {
 public:
  virtual ~UpstreamClient() = default;
  virtual void onPoolReady(UpstreamConnection& conn) = 0;
  virtual void onPoolFailure(UpstreamFailure reason, const std::string& detail) = 0;
  // `status` >= 200 (interim 1xx responses are consumed by the connection). `headers` are the
  // connection's and valid during the call only (their memory serves the next response).
  virtual void onResponseHeaders(int status, const http::HeaderBlock& headers, bool chunked,
                                 bool has_content_length, uint64_t content_length) = 0;
  virtual void onResponseBody(const char* data, size_t len) = 0;
  // The response ended; the connection has already gone back to the pool or been closed.
  virtual void onResponseComplete() = 0;
  // The connection failed mid-request; `response_started` says whether headers had arrived.
  // The connection is closed and no longer usable.
  virtual void onUpstreamReset(UpstreamFailure reason, const std::string& detail,
                               bool response_started) = 0;
  // The connection's write queue drained below the low watermark.
  virtual void onUpstreamWritable() = 0;
  // Every byte of one read was handed over and the response goes on: a client that holds output
  // back to send it together with what follows (a response head waiting for its body) sends it
  // now. Not called after onResponseComplete or onUpstreamReset.
  virtual void onUpstreamReadComplete() = 0;
  // After a 101 to a request that asked to upgrade (expectUpgrade), the connection is a tunnel:
  // the upstream's bytes come here, as they arrive (onUpstreamReadComplete follows each read).
  virtual void onUpgradeData(const char* data, size_t len) = 0;
  // The upstream closed its side of the tunnel: everything it sent has been delivered. The
  // connection is closed.
  virtual void onUpgradeEnd() = 0;
};

class UpstreamConnection : public WriteCallbacks {
 public:
  UpstreamConnection(ConnectionPool& pool, Worker& worker);
  ~UpstreamConnection() override;

  // Sends request bytes. Returns false if the connection failed (onUpstreamReset follows later or
  // has been delivered already).
  bool write(const uv_buf_t* bufs, unsigned nbufs);
  bool write(std::string_view data) {
    uv_buf_t b = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
    return write(&b, 1);
  }
  // The request was fully written: once the response ends the connection may be reused.
  void requestComplete() { request_complete_ = true; }
  // For HEAD requests: the response has no body whatever its headers say.
  void expectNoBody() { expect_no_body_ = true; }
  // The request asks to upgrade: a 101 makes the connection a tunnel (onUpgradeData), where it is
  // otherwise a protocol error. An upgraded connection is never pooled again.
  void expectUpgrade() { expect_upgrade_ = true; }
  // Tunnels: the client closed its side; send FIN (TLS: close_notify first) after what is queued.
  void shutdownWrite();
  size_t pendingWriteBytes() const { return writer_.pendingBytes(); }
  // Flow control: stop/resume reading the response (the downstream is not draining).
  void readDisable(bool disable);
  // The client gives up on this connection (timeout, downstream gone): close it, never reuse.
  void abort();
  // Served at least one request before the current one: a failure before any response byte may be
  // the upstream closing an idle connection just as we wrote to it.
  bool reused() const { return requests_served_ > 0; }
  const std::string& endpointKey() const;

  // WriteCallbacks
  void onWriteProgress() override;
  void onWriteError(int err) override;

 private:
  friend class ConnectionPool;
  enum class State { Connecting, Idle, Busy, Closing };

  void connect(const EndpointInfo& endpoint, std::chrono::milliseconds timeout);
  void attach(UpstreamClient* client);
  void close();
  void fail(UpstreamFailure reason, const std::string& detail);
  void onData(const char* data, size_t len);
  // Bytes of an upgraded connection (after the 101) to the client, then the end of the read.
  void relayUpgraded(const char* data, size_t len);
  void onTlsData(const char* data, size_t len);
  void onConnected();
  void failTls(const std::string& detail);
  void onEof();
  // The response ended: back to the pool (unless `may_reuse` is false, or the exchange rules
  // reuse out), then the client hears so.
  void finishResponse(bool may_reuse = true);
  void resetParserState();

  static void onConnect(uv_connect_t* req, int status);
  static void onConnectTimeout(uv_timer_t* timer);
  static void onAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void onClose(uv_handle_t* handle);
  static void onShutdown(uv_shutdown_t* req, int status);

  static int onMessageBegin(llhttp_t* p);
  static int onHeaderField(llhttp_t* p, const char* at, size_t len);
  static int onHeaderFieldComplete(llhttp_t* p);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersComplete(llhttp_t* p);
  static int onBody(llhttp_t* p, const char* at, size_t len);
  static int onMessageComplete(llhttp_t* p);

  ConnectionPool& pool_;
  Worker& worker_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uv_connect_t connect_req_;
  int open_handles_ = 0;
  State state_ = State::Connecting;
  UpstreamClient* client_ = nullptr;
  StreamWriter writer_;
  llhttp_t parser_;
  static const llhttp_settings_t kParserSettings;
  http::HeaderBlock headers_;
  bool interim_ = false;
  bool response_started_ = false;
  bool response_complete_ = false;
  bool request_complete_ = false;
  bool expect_no_body_ = false;
  bool expect_upgrade_ = false;
  bool upgraded_ = false;  // a 101 was received: raw bytes both ways from here on
  bool write_shut_ = false;
  uv_shutdown_t shutdown_req_;
  bool read_disabled_ = false;
  bool reading_ = false;
  uint64_t requests_served_ = 0;
  tls::SessionPtr tls_;  // TLS clusters; writer_ encrypts through it
  // The cluster whose upstream_connections_active counts this connection. The pool is shared by
  // every cluster with this endpoint, so the close must go back to the same one.
  ClusterStats* counted_in_ = nullptr;
  std::list<UpstreamConnection*>::iterator self_;
};

// Handle for a request waiting in the pool's queue; cancel() when the request goes away.
class PendingRequest {
 public:
  PendingRequest(UpstreamClient* c, bool new_connection)
      : client(c), needs_new_connection(new_connection) {}
  UpstreamClient* client;
  bool cancelled = false;
  // Served only by a connection that has carried no request yet (see ConnectionPool::newStream).
  bool needs_new_connection = false;
};

class ConnectionPool {
 public:
  ConnectionPool(Worker& worker, const EndpointInfo& endpoint);
  ~ConnectionPool();

  // Either calls client.onPoolReady / onPoolFailure before returning (and returns nullptr), or
  // queues the request and returns a handle to cancel it with. `force_new_connection`: the
  // request gets a connection that has carried no request yet (a replay after a pooled one turned
  // out closed by the upstream must not land on another stale one), not an idle pooled one, unless
  // the pool is at max_connections with nothing connecting.
  std::shared_ptr<PendingRequest> newStream(UpstreamClient& client, const ClusterInfo& cluster,
                                            bool force_new_connection);
  // The response ended. `reusable`: both sides kept the connection alive.
  void release(UpstreamConnection* conn, bool reusable);
  // Closes idle connections; busy ones close when released. The worker deletes the pool when it
  // is empty.
  void drain();
  bool empty() const { return connections_.empty(); }
  const std::string& key() const { return endpoint_.key; }
  const std::string& poolKey() const { return endpoint_.pool_key; }
  const EndpointInfo& endpoint() const { return endpoint_; }
  ClusterStats* stats() const { return stats_; }
  // Worker::applySnapshot marks the pools whose endpoint the new snapshot still has.
  void setLiveMark(uint64_t mark) { live_mark_ = mark; }
  uint64_t liveMark() const { return live_mark_; }

 private:
  friend class UpstreamConnection;
  void onConnectionClosed(UpstreamConnection* conn);
  void onConnected(UpstreamConnection* conn);
  void onConnectFailed(UpstreamConnection* conn, UpstreamFailure reason, const std::string& detail);
  void servePending();
  // An idle connection for a waiting request, taken out of idle_; nullptr when none fits.
  UpstreamConnection* takeIdle(bool needs_new_connection);
  UpstreamConnection* createConnection();

  Worker& worker_;
  EndpointInfo endpoint_;
  ClusterStats* stats_ = nullptr;  // the cluster that last used the pool (for connection stats)
  std::chrono::milliseconds connect_timeout_{1000};
  uint32_t max_connections_ = 1024;
  uint32_t max_pending_ = 1024;
  std::list<UpstreamConnection*> connections_;  // every open connection, owned
  std::deque<UpstreamConnection*> idle_;        // most recently used at the back
  std::deque<std::shared_ptr<PendingRequest>> pending_;
  uint32_t connecting_ = 0;
  uint64_t live_mark_ = 0;
  bool draining_ = false;
};

}  // namespace remora
