#pragma once

// A child process for integration tests: fork/exec with stdout and stderr appended to one log
// file, signals, waiting with a deadline, and SIGKILL on destruction if it is still alive.

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util.h"

namespace remora::itest {

class Process {
 public:
  // `env` entries are added to (or override) the test's own environment.
  Process(std::string name, std::string binary, std::vector<std::string> args,
          std::filesystem::path log_file, std::map<std::string, std::string> env = {});
  // Stops the process if it is still running (SIGTERM and up to stopGrace() to exit, then
  // SIGKILL) and reaps it. If the current test has failed, then prints the tail of its log.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // fork + exec. False (with the reason in `error`) if the binary is missing or fork fails; an
  // exec failure shows up as exit code 127 with the reason in the log. The child gets SIGKILL if
  // the thread that started it exits (PR_SET_PDEATHSIG), so start processes from the test's
  // main thread, not from short-lived helper threads.
  bool start(std::string* error = nullptr);

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  // True while the child has not been reaped (reaps it if it has exited meanwhile).
  bool running();
  bool signal(int sig);
  // Waits up to `timeout` for the child to exit. Returns its exit code, or 128 + signal number
  // if a signal killed it; nullopt if it is still running at the deadline.
  std::optional<int> waitExit(Duration timeout);
  // The exit code once reaped (same encoding as waitExit).
  std::optional<int> exitCode() const { return exit_code_; }
  // SIGKILL and reap.
  void kill9();
  // How long the destructor lets the process exit after SIGTERM before it sends SIGKILL.
  // Default 0: straight SIGKILL. A grace period lets a process flush its log (and lets
  // sanitizers report) before the log is dumped.
  void setStopGrace(Duration grace) { stop_grace_ = grace; }
  Duration stopGrace() const { return stop_grace_; }

  const std::filesystem::path& logPath() const { return log_file_; }
  std::string log() const { return readFile(log_file_); }
  std::string logTail(size_t max_lines = 40) const { return tailLines(log(), max_lines); }
  // Prints the log tail to stderr, framed with the process name.
  void dumpLog(size_t max_lines = 60) const;

 private:
  bool reap(bool block);

  std::string name_;
  std::string binary_;
  std::vector<std::string> args_;
  std::filesystem::path log_file_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  Duration stop_grace_{0};
};

}  // namespace remora::itest
