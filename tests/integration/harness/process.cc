#include "process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

extern char** environ;

namespace remora::itest {

Process::Process(std::string name, std::string binary, std::vector<std::string> args,
                 std::filesystem::path log_file, std::map<std::string, std::string> env)
    : name_(std::move(name)),
      binary_(std::move(binary)),
      args_(std::move(args)),
      log_file_(std::move(log_file)),
      env_(std::move(env)) {}

Process::~Process() {
  if (pid_ > 0 && stop_grace_.count() > 0 && running()) {
    ::kill(pid_, SIGTERM);
    waitExit(stop_grace_);
  }
  kill9();
  if (::testing::Test::HasFailure() && pid_ > 0) dumpLog();
}

bool Process::start(std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error != nullptr) *error = why;
    return false;
  };
  if (pid_ > 0 && !exit_code_) return fail(name_ + " is already running");
  if (::access(binary_.c_str(), X_OK) != 0) {
    return fail(name_ + ": binary " + binary_ + " is missing or not executable");
  }

  // Everything the child needs is prepared before fork(): between fork and exec only
  // async-signal-safe calls are allowed (the test process has other threads).
  std::vector<std::string> argv_storage;
  argv_storage.push_back(binary_);
  argv_storage.insert(argv_storage.end(), args_.begin(), args_.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env_map[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env_) env_map[k] = v;
  std::vector<std::string> env_storage;
  for (const auto& [k, v] : env_map) env_storage.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int log_fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return fail("open " + log_file_.string() + ": " + strerror(errno));
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return fail(std::string("fork: ") + strerror(errno));
  }
  if (pid == 0) {
    // Child. Die with the test process so a crashed test leaves nothing behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(argv[0], argv.data(), envp.data());
    const char* msg = "exec failed: ";
    (void)!::write(STDERR_FILENO, msg, strlen(msg));
    const char* why = strerror(errno);
    (void)!::write(STDERR_FILENO, why, strlen(why));
    (void)!::write(STDERR_FILENO, "\n", 1);
    ::_exit(127);
  }
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  pid_ = pid;
  exit_code_.reset();
  return true;
}

bool Process::reap(bool block) {
  if (pid_ <= 0 || exit_code_) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  if (r < 0) {
    exit_code_ = -1;  // Not our child any more; nothing left to wait for.
    return true;
  }
  if (WIFEXITED(status)) {
    exit_code_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit_code_ = 128 + WTERMSIG(status);
  } else {
    return false;
  }
  return true;
}

bool Process::running() { return pid_ > 0 && !reap(false); }

bool Process::signal(int sig) {
  if (!running()) return false;
  return ::kill(pid_, sig) == 0;
}

std::optional<int> Process::waitExit(Duration timeout) {
  if (pid_ <= 0) return std::nullopt;
  waitFor([this] { return reap(false); }, timeout, Duration(5));
  return exit_code_;
}

void Process::kill9() {
  if (pid_ <= 0 || exit_code_) return;
  ::kill(pid_, SIGKILL);
  reap(true);
}

void Process::dumpLog(size_t max_lines) const {
  std::fprintf(stderr,
               "----- %s (pid %d) log %s, last %zu lines -----\n%s\n----- end of %s log "
               "-----\n",
               name_.c_str(), static_cast<int>(pid_), log_file_.c_str(), max_lines,
               logTail(max_lines).c_str(), name_.c_str());
}

}  // namespace remora::itest
