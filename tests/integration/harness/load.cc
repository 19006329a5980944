#include "load.h"

#include <sstream>

namespace remora::itest {

namespace {

constexpr size_t kMaxErrors = 10;

}  // namespace

std::string LoadResult::summary() const {
  std::ostringstream out;
  out << total << " requests, " << failures << " failures, statuses {";
  bool first = true;
  for (const auto& [status, n] : statuses) {
    out << (first ? "" : ", ") << status << ": " << n;
    first = false;
  }
  out << "}";
  if (!by_header.empty()) {
    out << ", by header {";
    first = true;
    for (const auto& [v, n] : by_header) {
      out << (first ? "" : ", ") << v << ": " << n;
      first = false;
    }
    out << "}";
  }
  for (const auto& e : errors) out << "\n  error: " << e;
  return out.str();
}

BackgroundLoad::BackgroundLoad(LoadOptions options) : options_(std::move(options)) {
  start_ = Clock::now();
  for (int i = 0; i < std::max(options_.threads, 1); ++i) {
    threads_.emplace_back([this] { worker(); });
  }
}

BackgroundLoad::~BackgroundLoad() { stop(); }

void BackgroundLoad::worker() {
  HttpClient client(options_.port, "127.0.0.1", options_.request_timeout);
  LoadResult local;
  const auto end =
      options_.duration.count() > 0 ? start_ + options_.duration : Clock::time_point::max();
  for (int i = 0; !stop_.load(); ++i) {
    if (options_.requests_per_thread > 0 && i >= options_.requests_per_thread) break;
    if (Clock::now() >= end) break;
    Response r = client.request(options_.method, options_.path, options_.headers, options_.body);
    ++local.total;
    bool failed = false;
    std::string why;
    if (!r.ok()) {
      failed = true;
      why = r.error;
    } else {
      ++local.statuses[r.status];
      if (!options_.count_header.empty()) {
        ++local.by_header[r.headers.value(options_.count_header)];
      }
      if (options_.check && !options_.check(r)) {
        failed = true;
        why = "check failed for status " + std::to_string(r.status) + ": " + r.body.substr(0, 200);
      }
    }
    if (failed) {
      ++local.failures;
      failures_.fetch_add(1);
      if (local.errors.size() < kMaxErrors) local.errors.push_back(why);
    }
    completed_.fetch_add(1);
  }
  std::lock_guard<std::mutex> lock(mu_);
  result_.total += local.total;
  result_.failures += local.failures;
  for (const auto& [s, n] : local.statuses) result_.statuses[s] += n;
  for (const auto& [v, n] : local.by_header) result_.by_header[v] += n;
  for (auto& e : local.errors) {
    if (result_.errors.size() < kMaxErrors) result_.errors.push_back(std::move(e));
  }
}

LoadResult BackgroundLoad::stop() {
  stop_ = true;
  return wait();
}

LoadResult BackgroundLoad::wait() {
  if (!joined_) {
    joined_ = true;
    for (auto& t : threads_) t.join();
    result_.elapsed = std::chrono::duration_cast<Duration>(Clock::now() - start_);
  }
  std::lock_guard<std::mutex> lock(mu_);
  return result_;
}

LoadResult runLoad(const LoadOptions& options) {
  if (options.requests_per_thread <= 0 && options.duration.count() <= 0) {
    LoadResult r;
    r.errors.push_back("runLoad needs requests_per_thread or duration");
    r.failures = 1;
    return r;
  }
  BackgroundLoad load(options);
  return load.wait();
}

}  // namespace remora::itest
