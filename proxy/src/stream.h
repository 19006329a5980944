#pragma once

// ActiveStream: one request on a downstream connection, from its headers to the end of its
// response. It picks the route, the cluster and the endpoint, drives the upstream attempt through
// the endpoint's pool, streams bodies both ways with flow control, and answers locally when the
// request cannot be proxied (contract section 3).

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "http/headers.h"
#include "snapshot.h"
#include "upstream.h"
#include "worker.h"

namespace remora {

class DownstreamConnection;

struct RequestHead {
  std::string method;
  std::string url;
  uint8_t http_major = 1;
  uint8_t http_minor = 1;
  http::HeaderMap headers;
  bool keep_alive = true;
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;

  std::string_view path() const {
    std::string_view u = url;
    size_t q = u.find('?');
    return q == std::string_view::npos ? u : u.substr(0, q);
  }
  bool hasBody() const { return chunked || (has_content_length && content_length > 0); }
};

class ActiveStream : public UpstreamClient, public Deletable {
 public:
  ActiveStream(DownstreamConnection& conn, SnapshotConstSharedPtr snapshot,
               const ListenerInfo& listener, RequestHead&& head);
  ~ActiveStream() override;

  void start();
  void onRequestBody(const char* data, size_t len);
  void onRequestComplete();
  void onRouteTimeout();
  // The downstream connection failed (reset, write error): give up on the request.
  void onDownstreamReset(const std::string& reason);
  // The downstream write queue drained below its low watermark.
  void onDownstreamWritable();
  bool complete() const { return complete_; }
  bool responseStarted() const { return response_started_; }
  // A local reply for a request the parser could not finish (e.g. a body that is not valid
  // chunked encoding): sent if nothing was sent yet.
  void sendLocalReply(int status, std::string_view reason, bool close_connection);

  // UpstreamClient
  void onPoolReady(UpstreamConnection& conn) override;
  void onPoolFailure(UpstreamFailure reason, const std::string& detail) override;
  void onResponseHeaders(int status, http::HeaderMap&& headers, bool chunked,
                         bool has_content_length, uint64_t content_length) override;
  void onResponseBody(const char* data, size_t len) override;
  void onResponseComplete() override;
  void onUpstreamReset(UpstreamFailure reason, const std::string& detail,
                       bool response_started) override;
  void onUpstreamWritable() override;

 private:
  enum class Framing { None, ContentLength, Chunked, Close };

  void startAttempt(bool force_new_connection);
  const EndpointInfo* pickEndpoint();
  void buildUpstreamHead();
  void sendBody();
  void sendBodyEnd();
  void writeUpstream(const uv_buf_t* bufs, unsigned n);
  void cleanupUpstream();
  void finish(bool close_connection);
  void recordUpstreamStatus(int status);

  DownstreamConnection& conn_;
  SnapshotConstSharedPtr snapshot_;
  const ListenerInfo& listener_;
  RequestHead head_;
  std::chrono::steady_clock::time_point start_time_;
  std::string request_id_;

  const RouteInfo* route_ = nullptr;
  const ClusterInfo* cluster_ = nullptr;
  const EndpointInfo* endpoint_ = nullptr;
  ConnectionPool* pool_ = nullptr;
  UpstreamConnection* upstream_ = nullptr;
  std::shared_ptr<PendingRequest> pending_;
  uint32_t attempts_ = 0;
  bool upstream_reused_ = false;  // the current attempt's connection came from the idle pool
  bool stale_retry_done_ = false;
  bool counted_active_ = false;

  std::string upstream_head_;
  std::deque<std::string> body_;  // request body chunks not yet sent, or kept for a replay
  size_t body_sent_ = 0;          // chunks of body_ already written to the current upstream
  uint64_t body_received_ = 0;
  bool body_replayable_ = true;   // body_ still holds every chunk received
  bool request_complete_ = false;

  bool response_started_ = false;
  bool complete_ = false;
  Framing framing_ = Framing::None;
  int response_status_ = 0;
  uint64_t bytes_sent_ = 0;
  std::string local_reason_;
};

}  // namespace remora
