#include "remora_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

namespace remora::itest {

namespace {

bool containsNoCase(std::string_view haystack, std::string_view needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                        [](char a, char b) { return std::tolower(a) == std::tolower(b); });
  return it != haystack.end();
}

// Parses `k="v",k2="v2"` (Prometheus label syntax, with \" \\ \n escapes).
std::optional<Labels> parseLabels(std::string_view s) {
  Labels out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',')) ++i;
    if (i >= s.size()) break;
    size_t eq = s.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= s.size() || s[eq + 1] != '"') return std::nullopt;
    std::string key(s.substr(i, eq - i));
    std::string value;
    size_t j = eq + 2;
    for (; j < s.size() && s[j] != '"'; ++j) {
      if (s[j] == '\\' && j + 1 < s.size()) {
        ++j;
        value.push_back(s[j] == 'n' ? '\n' : s[j]);
      } else {
        value.push_back(s[j]);
      }
    }
    if (j >= s.size()) return std::nullopt;
    out[key] = value;
    i = j + 1;
  }
  return out;
}

}  // namespace

std::optional<std::string> renderTemplate(std::string_view tmpl, const Vars& vars,
                                          std::map<std::string, uint16_t>& ports,
                                          const std::filesystem::path& dir, std::string* error) {
  auto portFor = [&](const std::string& name) -> uint16_t {
    auto it = ports.find(name);
    if (it != ports.end()) return it->second;
    uint16_t p = freePort();
    if (p != 0) ports[name] = p;
    return p;
  };
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    size_t open = tmpl.find("${", i);
    if (open == std::string_view::npos) {
      out.append(tmpl.substr(i));
      break;
    }
    out.append(tmpl.substr(i, open - i));
    size_t close = tmpl.find('}', open);
    if (close == std::string_view::npos) {
      if (error) *error = "unterminated placeholder at offset " + std::to_string(open);
      return std::nullopt;
    }
    std::string key(tmpl.substr(open + 2, close - open - 2));
    std::string value;
    if (key == "LISTEN") {
      value = "127.0.0.1:" + std::to_string(portFor("listen"));
    } else if (key == "ADMIN") {
      value = "127.0.0.1:" + std::to_string(portFor("admin"));
    } else if (key == "DIR") {
      value = dir.string();
    } else if (key.rfind("port:", 0) == 0) {
      value = std::to_string(portFor(key.substr(5)));
    } else if (key.rfind("addr:", 0) == 0) {
      value = "127.0.0.1:" + std::to_string(portFor(key.substr(5)));
    } else if (auto it = vars.find(key); it != vars.end()) {
      value = it->second;
    } else {
      if (error) *error = "unknown placeholder ${" + key + "}";
      return std::nullopt;
    }
    if (value == "0" || value == "127.0.0.1:0") {
      if (error) *error = "no free port for ${" + key + "}";
      return std::nullopt;
    }
    out += value;
    i = close + 1;
  }
  return out;
}

std::optional<double> parseMetric(std::string_view text, std::string_view name,
                                  const Labels& labels) {
  std::optional<double> sum;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line.substr(0, name.size()) != name) continue;
    std::string_view rest = line.substr(name.size());
    Labels have;
    if (!rest.empty() && rest[0] == '{') {
      // The closing brace is the first '}' not inside a quoted value.
      size_t end = std::string_view::npos;
      bool quoted = false;
      for (size_t k = 1; k < rest.size(); ++k) {
        if (rest[k] == '\\') {
          ++k;
        } else if (rest[k] == '"') {
          quoted = !quoted;
        } else if (rest[k] == '}' && !quoted) {
          end = k;
          break;
        }
      }
      if (end == std::string_view::npos) continue;
      auto parsed = parseLabels(rest.substr(1, end - 1));
      if (!parsed) continue;
      have = std::move(*parsed);
      rest = rest.substr(end + 1);
    } else if (rest.empty() || (rest[0] != ' ' && rest[0] != '\t')) {
      continue;  // a longer metric name that merely starts with `name`
    }
    bool match = std::all_of(labels.begin(), labels.end(), [&](const auto& kv) {
      auto it = have.find(kv.first);
      return it != have.end() && it->second == kv.second;
    });
    if (!match) continue;
    while (!rest.empty() && (rest[0] == ' ' || rest[0] == '\t')) rest.remove_prefix(1);
    std::string num(rest.substr(0, rest.find_first_of(" \t\r")));
    char* endp = nullptr;
    double v = std::strtod(num.c_str(), &endp);
    if (num.empty() || endp == num.c_str()) continue;
    sum = sum.value_or(0.0) + v;
  }
  return sum;
}

const char* remoraBinary() {
  const char* env = std::getenv("REMORA_ITEST_REMORA");
  return env != nullptr && *env != '\0' ? env : REMORA_BIN;
}

bool remoraBinaryExists() { return ::access(remoraBinary(), X_OK) == 0; }

RemoraProcess::RemoraProcess(const TempDir& dir, std::string name)
    : dir_(dir.path()),
      name_(std::move(name)),
      config_path_(dir.path() / (name_ + ".yaml")),
      log_path_(dir.path() / (name_ + ".log")) {}

RemoraProcess::~RemoraProcess() {
  if (!process_ || !process_->running()) return;
  std::optional<int> code = terminate(Duration(5000));
  if (!code) {
    std::fprintf(stderr, "[ itest ] %s did not exit within 5 s of SIGTERM at teardown; killed\n",
                 name_.c_str());
  } else if (*code != 0) {
    ADD_FAILURE() << name_ << " exited with code " << *code
                  << " on SIGTERM at teardown (a sanitizer report?); log tail:\n"
                  << process_->logTail(40);
  }
}

uint16_t RemoraProcess::port(const std::string& name) {
  auto it = ports_.find(name);
  if (it != ports_.end()) return it->second;
  uint16_t p = freePort();
  if (p != 0) ports_[name] = p;
  return p;
}

::testing::AssertionResult RemoraProcess::writeConfig(std::string_view yaml_template,
                                                      const Vars& vars) {
  std::string error;
  auto rendered = renderTemplate(yaml_template, vars, ports_, dir_, &error);
  if (!rendered) return ::testing::AssertionFailure() << "config template: " << error;
  if (!writeFileAtomic(config_path_, *rendered)) {
    return ::testing::AssertionFailure() << "cannot write " << config_path_;
  }
  rendered_ = std::move(*rendered);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult RemoraProcess::start(std::string_view yaml_template, const Vars& vars,
                                                Duration ready_timeout) {
  if (!remoraBinaryExists()) {
    return ::testing::AssertionFailure() << "remora binary not built: " << remoraBinary();
  }
  if (yaml_template.find("${ADMIN}") == std::string_view::npos &&
      yaml_template.find("${addr:admin}") == std::string_view::npos) {
    return ::testing::AssertionFailure()
           << "the config template must set the admin address to ${ADMIN}";
  }
  constexpr int kAttempts = 3;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    if (auto written = writeConfig(yaml_template, vars); !written) return written;
    if (process_) process_->kill9();
    std::error_code ec;
    std::filesystem::remove(log_path_, ec);
    std::vector<std::string> args{"--config", config_path_.string()};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    process_ = std::make_unique<Process>(name_, remoraBinary(), args, log_path_, env_);
    std::string error;
    if (!process_->start(&error)) return ::testing::AssertionFailure() << error;
    bool ready =
        waitFor([&] { return isReady() || !process_->running(); }, ready_timeout, Duration(20));
    if (ready && isReady()) return ::testing::AssertionSuccess();
    std::string log = process_->log();
    bool port_taken = !process_->running() && (containsNoCase(log, "address already in use") ||
                                               containsNoCase(log, "EADDRINUSE"));
    if (port_taken && attempt < kAttempts) {
      // Another test process took one of our ports between freePort() and bind(): new ports.
      ports_.clear();
      continue;
    }
    auto failure = ::testing::AssertionFailure();
    if (process_->running()) {
      failure << name_ << " did not become ready within " << ready_timeout.count() << " ms";
    } else {
      failure << name_ << " exited with code " << process_->exitCode().value_or(-1)
              << " before becoming ready";
    }
    failure << "\nconfig " << config_path_.string() << ":\n"
            << rendered_ << "\nlog tail:\n"
            << process_->logTail(30);
    return failure;
  }
  return ::testing::AssertionFailure() << "unreachable";
}

bool RemoraProcess::isReady() const {
  auto it = ports_.find("admin");
  if (it == ports_.end()) return false;
  HttpClient client(it->second, "127.0.0.1", Duration(1000));
  return client.get("/ready").status == 200;
}

bool RemoraProcess::reload() { return process_ && process_->signal(SIGHUP); }

::testing::AssertionResult RemoraProcess::reload(std::string_view yaml_template, const Vars& vars) {
  if (auto written = writeConfig(yaml_template, vars); !written) return written;
  if (!reload()) return ::testing::AssertionFailure() << name_ << " is not running";
  return ::testing::AssertionSuccess();
}

std::optional<int> RemoraProcess::terminate(Duration timeout) {
  if (!process_) return std::nullopt;
  process_->signal(SIGTERM);
  return process_->waitExit(timeout);
}

void RemoraProcess::kill9() {
  if (process_) process_->kill9();
}

Response RemoraProcess::admin(std::string_view path, std::string_view method) {
  HttpClient client(adminPort(), "127.0.0.1", Duration(5000));
  return client.request(method, path);
}

std::string RemoraProcess::stats() {
  Response r = admin("/stats");
  return r.ok() && r.status == 200 ? r.body : "";
}

std::optional<double> RemoraProcess::metric(std::string_view name, const Labels& labels) {
  return parseMetric(stats(), name, labels);
}

ValidateResult RemoraProcess::validate(const TempDir& dir, std::string_view file_name,
                                       std::string_view content, Duration timeout,
                                       bool config_form) {
  ValidateResult result;
  result.file = dir.writeFile(file_name, content);
  std::filesystem::path log = dir / (std::string(file_name) + ".validate.log");
  std::vector<std::string> args = {"--validate", result.file.string()};
  if (config_form) args = {"--config", result.file.string(), "--validate"};
  Process p("remora --validate", remoraBinary(), args, log);
  std::string error;
  if (!p.start(&error)) {
    result.output = error;
    return result;
  }
  result.exit_code = p.waitExit(timeout);
  result.output = p.log();
  return result;
}

}  // namespace remora::itest
