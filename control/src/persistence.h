#pragma once

// Durable state with group commit.
//
// Every acknowledged change must survive kill -9, so a mutating request is answered only once
// the state file that contains it has been fsynced. An fsync costs milliseconds, so writes run
// on libuv's thread pool (the loop keeps serving reads and streams meanwhile) and every change
// that arrives while one write is in flight goes into the next: a burst of N changes costs far
// fewer than N writes. Each write is the whole state, atomically: temp file, fsync, rename,
// fsync of the directory.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace remora::control {

// Replaces `path` with `data` so that a crash at any point leaves either the old or the new file:
// write `path`.tmp, fsync it, rename it over `path`, fsync the directory. Returns false with the
// reason in `error`.
bool writeFileAtomic(const std::string& path, std::string_view data, std::string& error);
// The whole file; nullopt if it does not exist (`error` empty) or cannot be read (`error` set).
std::optional<std::string> readStateFile(const std::string& path, std::string& error);

class StatePersister {
 public:
  // The state as it is now. `serialize` runs on a worker thread and returns the file's content:
  // it must use only what it owns (typically a copy of the state taken by the capture function,
  // which is far cheaper than serializing on the loop).
  struct Capture {
    uint64_t version = 0;
    std::function<std::string()> serialize;
  };
  using CaptureFn = std::function<Capture()>;
  // "" once durable, else why the write failed (the change stays in memory and is retried).
  using DoneFn = std::function<void(const std::string& error)>;

  // An empty `path` keeps the state in memory only: every change is "durable" at once.
  StatePersister(uv_loop_t* loop, std::string path, CaptureFn capture);
  ~StatePersister();
  StatePersister(const StatePersister&) = delete;
  StatePersister& operator=(const StatePersister&) = delete;

  // The version the file holds after a load (nothing to write until it changes).
  void setDurableVersion(uint64_t version) { durable_ = latest_ = version; }
  // The state is now at `version` and must reach the disk.
  void changed(uint64_t version);
  // Runs `done` once `version` (and everything before it) is on disk, or when the write that
  // should have carried it failed. Runs it at once if it already is.
  void whenDurable(uint64_t version, DoneFn done);
  uint64_t durableVersion() const { return durable_; }
  // Called after each successful write with the version now on disk and the capture's tag.
  void setDurableCallback(std::function<void(uint64_t version)> callback) {
    durable_callback_ = std::move(callback);
  }
  // Writes still needed or in flight.
  bool idle() const { return !writing_ && latest_ == durable_; }
  // Stops the timer; an in-flight write still completes on the loop (and, if changes are
  // pending, one last write follows).
  void close();
  uint64_t writes() const { return writes_; }

 private:
  struct Write;
  void startWrite();
  void startWriteAfter(uint64_t delay_ms);
  void onWriteDone(uint64_t version, const std::string& error);

  uv_loop_t* loop_;
  std::string path_;
  CaptureFn capture_;
  std::function<void(uint64_t)> durable_callback_;
  std::multimap<uint64_t, DoneFn> waiters_;
  uint64_t durable_ = 0;
  uint64_t latest_ = 0;
  bool writing_ = false;
  bool closed_ = false;
  uint64_t writes_ = 0;
  // Delays the next write: briefly to gather a group, or for a while after a failure.
  uv_timer_t* timer_ = nullptr;
};

}  // namespace remora::control
