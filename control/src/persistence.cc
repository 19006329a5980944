#include "persistence.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

namespace remora::control {

namespace {

// After a failed write, try again this much later (a full disk rarely frees itself at once).
constexpr uint64_t kRetryDelayMs = 1000;
// After a write, the next one waits this long: the clients just answered send their next
// change within a round trip, and one write then carries all of them instead of the first alone.
constexpr uint64_t kGroupCommitDelayMs = 2;

std::string errnoText(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

bool writeFileAtomic(const std::string& path, std::string_view data, std::string& error) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = errnoText("cannot create", tmp);
    return false;
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = errnoText("cannot write", tmp);
      ::close(fd);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    error = errnoText("cannot fsync", tmp);
    ::close(fd);
    return false;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    error = errnoText("cannot rename " + tmp + " to", path);
    return false;
  }
  // The rename is durable only once the directory entry is.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    error = errnoText("cannot open directory", dir);
    return false;
  }
  const bool ok = ::fsync(dfd) == 0;
  if (!ok) error = errnoText("cannot fsync directory", dir);
  ::close(dfd);
  return ok;
}

std::optional<std::string> readStateFile(const std::string& path, std::string& error) {
  error.clear();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path;
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct StatePersister::Write {
  uv_work_t req;
  StatePersister* self;
  std::string path;
  std::function<std::string()> serialize;
  uint64_t version;
  std::string error;
};

StatePersister::StatePersister(uv_loop_t* loop, std::string path, CaptureFn capture)
    : loop_(loop), path_(std::move(path)), capture_(std::move(capture)) {}

StatePersister::~StatePersister() {
  // Not close(): a write started now would outlive this object. The owner closes first and runs
  // the loop until in-flight writes are done.
  closed_ = true;
  if (timer_ != nullptr) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
}

void StatePersister::close() {
  if (closed_) return;
  closed_ = true;
  // A write that was waiting for its timer goes now.
  if (!path_.empty() && !writing_ && latest_ > durable_) startWrite();
  if (timer_ != nullptr) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
}

void StatePersister::changed(uint64_t version) {
  latest_ = std::max(latest_, version);
  if (path_.empty()) {
    onWriteDone(version, "");
    return;
  }
  // Nothing in flight and no write scheduled: write now (a lone change pays no delay).
  if (!writing_ && (timer_ == nullptr || !uv_is_active(reinterpret_cast<uv_handle_t*>(timer_)))) {
    startWrite();
  }
}

void StatePersister::whenDurable(uint64_t version, DoneFn done) {
  if (version <= durable_) {
    done("");
    return;
  }
  waiters_.emplace(version, std::move(done));
}

void StatePersister::startWrite() {
  Capture capture = capture_();
  auto* w = new Write();
  w->req.data = w;
  w->self = this;
  w->path = path_;
  w->serialize = std::move(capture.serialize);
  w->version = capture.version;
  writing_ = true;
  int rc = uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* req) {
        auto* wr = static_cast<Write*>(req->data);
        writeFileAtomic(wr->path, wr->serialize(), wr->error);
      },
      [](uv_work_t* req, int status) {
        std::unique_ptr<Write> wr(static_cast<Write*>(req->data));
        if (status == UV_ECANCELED && wr->error.empty()) wr->error = "write cancelled";
        wr->self->onWriteDone(wr->version, wr->error);
      });
  if (rc != 0) {
    const uint64_t version = w->version;
    delete w;
    onWriteDone(version, std::string("cannot queue the state write: ") + uv_strerror(rc));
  }
}

void StatePersister::onWriteDone(uint64_t version, const std::string& error) {
  writing_ = false;
  ++writes_;
  std::vector<DoneFn> ready;
  if (error.empty()) {
    spdlog::debug("state version {} is on disk", version);
    durable_ = std::max(durable_, version);
    for (auto it = waiters_.begin(); it != waiters_.end() && it->first <= durable_;) {
      ready.push_back(std::move(it->second));
      it = waiters_.erase(it);
    }
  } else {
    spdlog::error("cannot persist state version {}: {}; retrying in {}ms", version, error,
                  kRetryDelayMs);
    // The requests whose change this write carried learn that it is not durable (yet).
    for (auto it = waiters_.begin(); it != waiters_.end() && it->first <= version;) {
      ready.push_back(std::move(it->second));
      it = waiters_.erase(it);
    }
  }
  for (DoneFn& done : ready) done(error);
  if (error.empty() && durable_callback_) durable_callback_(durable_);
  if (path_.empty()) return;
  if (closed_) {
    // Shutting down: no timers any more, but pending changes still get their write.
    if (error.empty() && latest_ > durable_) startWrite();
    return;
  }
  if (!error.empty()) {
    startWriteAfter(kRetryDelayMs);
  } else if (latest_ > durable_) {
    startWriteAfter(kGroupCommitDelayMs);
  }
}

void StatePersister::startWriteAfter(uint64_t delay_ms) {
  if (timer_ == nullptr) {
    timer_ = new uv_timer_t;
    uv_timer_init(loop_, timer_);
    timer_->data = this;
  }
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<StatePersister*>(t->data);
        if (!self->writing_ && self->latest_ > self->durable_) self->startWrite();
      },
      delay_ms, 0);
}

}  // namespace remora::control
