#include "uv_util.h"

namespace remora {

int StreamWriter::write(const uv_buf_t* bufs, unsigned int nbufs) {
  if (tls_ == nullptr) return writeRaw(bufs, nbufs);
  if (!tls_->write(bufs, nbufs)) return UV_EPROTO;
  return flushTls();
}

int StreamWriter::flushTls() {
  if (tls_ == nullptr || !tls_->hasOutput()) return 0;
  std::string_view out = tls_->output();
  uv_buf_t b = uv_buf_init(const_cast<char*>(out.data()), static_cast<unsigned>(out.size()));
  int rc = writeRaw(&b, 1);  // copies what the kernel does not take at once
  tls_->clearOutput();
  return rc;
}

int StreamWriter::writeRaw(const uv_buf_t* bufs, unsigned int nbufs) {
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; ++i) total += bufs[i].len;
  if (total == 0) return 0;

  size_t written = 0;
  if (pending_bytes_ == 0) {
    // Ordering: only try a direct write when nothing is queued ahead of it.
    int n = uv_try_write(stream_, bufs, nbufs);
    if (n < 0 && n != UV_EAGAIN) return n;
    if (n > 0) written = static_cast<size_t>(n);
    if (written == total) return 0;
  }

  auto* w = new WriteReq();
  w->writer = this;
  w->len = total - written;
  w->data.reserve(w->len);
  size_t skip = written;
  for (unsigned i = 0; i < nbufs; ++i) {
    if (skip >= bufs[i].len) {
      skip -= bufs[i].len;
      continue;
    }
    w->data.append(bufs[i].base + skip, bufs[i].len - skip);
    skip = 0;
  }
  w->req.data = w;
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, stream_, &b, 1, &StreamWriter::onWrite);
  if (rc != 0) {
    delete w;
    return rc;
  }
  pending_bytes_ += w->len;
  return 0;
}

void StreamWriter::onWrite(uv_write_t* req, int status) {
  auto* w = static_cast<WriteReq*>(req->data);
  StreamWriter* self = w->writer;
  self->pending_bytes_ -= w->len;
  delete w;
  if (status == UV_ECANCELED) return;  // the stream is closing; nobody is waiting
  if (status < 0) {
    self->callbacks_.onWriteError(status);
  } else {
    self->callbacks_.onWriteProgress();
  }
}

Timer::Timer(uv_loop_t* loop, std::function<void()> cb) : handle_(new uv_timer_t), cb_(std::move(cb)) {
  uv_timer_init(loop, handle_);
  handle_->data = this;
}

Timer::~Timer() {
  uv_timer_stop(handle_);
  handle_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

void Timer::enable(std::chrono::milliseconds delay) {
  uv_timer_start(
      handle_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Timer*>(t->data);
        if (self == nullptr) return;
        // The callback may destroy this Timer (a timeout that ends the request that owns it):
        // run a copy, so nothing it needs dies under it. Timers fire rarely; the copy is cheap.
        std::function<void()> cb = self->cb_;
        cb();
      },
      static_cast<uint64_t>(delay.count() < 0 ? 0 : delay.count()), 0);
}

void Timer::disable() { uv_timer_stop(handle_); }

bool Timer::enabled() const { return uv_is_active(reinterpret_cast<uv_handle_t*>(handle_)) != 0; }

}  // namespace remora
