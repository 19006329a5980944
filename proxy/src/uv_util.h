#pragma once

// Small helpers around libuv: a writer that tries a synchronous write first and queues the rest
// with owned storage, and the close bookkeeping every handle-owning object needs.

#include <uv.h>

#include "remora/filter.h"
#include "tls/tls.h"

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace remora {

// Receives write completions for a StreamWriter.
class WriteCallbacks {
 public:
  virtual ~WriteCallbacks() = default;
  // All queued bytes were written (pendingBytes() may be 0 now).
  virtual void onWriteProgress() = 0;
  // A queued write failed; the connection is unusable.
  virtual void onWriteError(int uv_error) = 0;
};

// Writes to a uv stream. uv_try_write first (no allocation, no extra syscall round trip for the
// common small response), then whatever the kernel did not take is copied into a request that owns
// its bytes until libuv calls back. The owner must outlive the stream's close callback, which libuv
// guarantees runs after every write callback (cancelled ones included).
//
// On a TLS connection (setTls) write() encrypts first and sends the records; flushTls() sends what
// the session produced on its own (handshake messages, session tickets, alerts, close_notify).
class StreamWriter {
 public:
  StreamWriter(uv_stream_t* stream, WriteCallbacks& callbacks)
      : stream_(stream), callbacks_(callbacks) {}

  // Returns 0, or a negative uv error (the connection should then be closed); UV_EPROTO when TLS
  // failed to encrypt.
  int write(const uv_buf_t* bufs, unsigned int nbufs);
  int write(std::string_view data) {
    uv_buf_t b = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
    return write(&b, 1);
  }
  size_t pendingBytes() const { return pending_bytes_; }
  void setTls(tls::Session* session) { tls_ = session; }
  // Sends the TLS session's pending records. 0 or a negative uv error.
  int flushTls();

 private:
  int writeRaw(const uv_buf_t* bufs, unsigned int nbufs);
  struct WriteReq {
    uv_write_t req;
    StreamWriter* writer;
    size_t len;
    std::string data;
  };
  static void onWrite(uv_write_t* req, int status);

  uv_stream_t* stream_;
  WriteCallbacks& callbacks_;
  size_t pending_bytes_ = 0;
  tls::Session* tls_ = nullptr;
};

// A one-shot uv timer owned by a plain object. The uv handle lives on the heap and is freed in its
// close callback, so the Timer can be destroyed synchronously at any time; destroying it cancels
// the callback.
class Timer : public FilterTimer {
 public:
  Timer(uv_loop_t* loop, std::function<void()> cb);
  ~Timer() override;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void enable(std::chrono::milliseconds delay) override;
  void disable() override;
  bool enabled() const;

 private:
  uv_timer_t* handle_;
  std::function<void()> cb_;
};

inline std::string uvError(int err) {
  return std::string(uv_err_name(err)) + " (" + uv_strerror(err) + ")";
}

}  // namespace remora
