#pragma once

// Concurrent load for integration tests: N threads, each with its own keep-alive HttpClient,
// sending the same request for a number of requests, for a duration, or until stopped.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "util.h"

namespace remora::itest {

struct LoadOptions {
  uint16_t port = 0;
  int threads = 4;
  int requests_per_thread = 0;  // > 0: stop after this many per thread
  Duration duration{0};         // > 0: stop after this long (whichever comes first)
  std::string method = "GET";
  std::string path = "/";
  Headers headers;
  std::string body;
  Duration request_timeout{5000};
  // Responses are additionally counted by the value of this header (e.g. which upstream
  // answered); "" to disable.
  std::string count_header = "x-upstream-name";
  // Extra check of each response; a false return counts as a failure.
  std::function<bool(const Response&)> check;
};

struct LoadResult {
  uint64_t total = 0;                // requests attempted
  uint64_t failures = 0;             // transport errors (no complete response) plus failed checks
  std::map<int, uint64_t> statuses;  // complete responses by status
  std::map<std::string, uint64_t> by_header;  // complete responses by `count_header` value
  std::vector<std::string> errors;            // the first few failure descriptions
  Duration elapsed{0};

  uint64_t count(int status) const {
    auto it = statuses.find(status);
    return it == statuses.end() ? 0 : it->second;
  }
  // Every request got a complete response with this status and no check failed.
  bool allStatus(int status) const { return failures == 0 && count(status) == total; }
  std::string summary() const;
};

// Runs the load to completion (requests_per_thread and/or duration must be set).
LoadResult runLoad(const LoadOptions& options);

// The same, in the background until stop(): for "while traffic flows, do X" tests.
class BackgroundLoad {
 public:
  explicit BackgroundLoad(LoadOptions options);
  ~BackgroundLoad();  // stops
  BackgroundLoad(const BackgroundLoad&) = delete;
  BackgroundLoad& operator=(const BackgroundLoad&) = delete;

  // Requests completed so far (successful or not); use with waitFor.
  uint64_t completed() const { return completed_.load(); }
  uint64_t failuresSoFar() const { return failures_.load(); }
  // Stops every thread after its current request and returns the totals. Idempotent.
  LoadResult stop();
  // Waits until every thread has finished by itself (requests_per_thread or duration reached)
  // and returns the totals.
  LoadResult wait();

 private:
  void worker();

  const LoadOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> failures_{0};
  std::mutex mu_;
  LoadResult result_;
  Clock::time_point start_;
  std::vector<std::thread> threads_;
  bool joined_ = false;
};

}  // namespace remora::itest
