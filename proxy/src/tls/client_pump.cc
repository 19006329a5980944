#include "tls/client_pump.h"

namespace remora::tls {

bool ClientPump::start() {
  if (session_->handshake() < 0) return false;
  flush();
  return true;
}

bool ClientPump::send(std::string_view data) {
  if (!session_->handshakeDone()) {
    queued_.append(data);
    return true;
  }
  uv_buf_t b = uv_buf_init(const_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
  if (!session_->write(&b, 1)) return false;
  flush();
  return true;
}

ClientPump::Result ClientPump::onRead(const char* data, size_t len, std::string& out) {
  session_->receive(data, len);
  if (!session_->handshakeDone()) {
    int rc = session_->handshake();
    flush();
    if (rc < 0) return Result::Error;
    if (rc == 0) return Result::Ok;
    if (!queued_.empty()) {
      std::string q;
      q.swap(queued_);
      if (!send(q)) return Result::Error;
    }
  }
  char buf[16384];
  for (;;) {
    ssize_t n = session_->read(buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    flush();
    if (n == Session::kWantMore) return Result::Ok;
    return n == Session::kClosed ? Result::Closed : Result::Error;
  }
}

void ClientPump::flush() {
  if (!session_->hasOutput()) return;
  struct Req {
    uv_write_t req;
    std::string data;
  };
  auto* r = new Req{{}, std::string(session_->output())};
  session_->clearOutput();
  r->req.data = r;
  uv_buf_t b = uv_buf_init(r->data.data(), static_cast<unsigned>(r->data.size()));
  // A failed write shows up as a failed read (reset or EOF); nothing to report here.
  if (uv_write(&r->req, stream_, &b, 1,
               [](uv_write_t* w, int) { delete static_cast<Req*>(w->data); }) != 0) {
    delete r;
  }
}

}  // namespace remora::tls
