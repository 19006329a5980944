// remora: the sidecar proxy. See README.md and docs/ for the commands and the config schema.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "remora/config/config.h"
#include "server.h"
#include "snapshot.h"

namespace {

constexpr const char* kUsage =
    "usage: remora --config FILE [--log-level LEVEL] [--node-id ID] [--control-plane HOST:PORT]\n"
    "       remora --validate FILE   (or: remora --config FILE --validate)\n"
    "\n"
    "  --config FILE          run the proxy with this YAML config\n"
    "  --validate FILE        check FILE and exit 0 (valid) or 1 (errors as file:line:col: reason)\n"
    "  --log-level LEVEL      trace|debug|info|warn|error|critical|off (overrides the file)\n"
    "  --node-id ID           identity towards the control plane (overrides the file)\n"
    "  --control-plane ADDR   control plane host:port (overrides the file)\n"
    "  --version              print the version and exit\n"
    "\n"
    "signals: SIGHUP reloads the config file, SIGTERM drains and exits 0\n";

int validateFile(const std::string& path) {
  remora::config::LoadResult result = remora::config::loadFile(path);
  if (!result.ok()) {
    std::fputs(result.formatErrors().c_str(), stderr);
    if (!result.formatErrors().empty() && result.formatErrors().back() != '\n') {
      std::fputc('\n', stderr);
    }
    std::fprintf(stderr, "%s: %zu error(s); nothing was applied\n", path.c_str(),
                 result.errors.size());
    return 1;
  }
  remora::StatsStore stats;
  remora::RuntimeRegistry runtime(stats, remora::RealTimeSource::instance());
  std::string error;
  remora::config::ConfigConstSharedPtr config = result.config;
  if (config->control_plane) {
    // As the running proxy does: routes may name clusters only the control plane defines.
    auto with_placeholders = std::make_shared<remora::config::Config>(*config);
    remora::addPlaceholderClusters(*with_placeholders);
    config = with_placeholders;
  }
  if (!remora::Snapshot::build(config, 1, "file", stats, runtime, error)) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), error.c_str());
    return 1;
  }
  std::printf("%s: OK (%zu listener(s), %zu cluster(s))\n", path.c_str(),
              result.config->listeners.size(), result.config->clusters.size());
  return 0;
}

// Every client and upstream connection is a file descriptor, and service managers commonly start
// processes with a soft RLIMIT_NOFILE of 1024: a sidecar would refuse connections at about a
// thousand while the kernel allows far more. Raise the soft limit to the hard one at startup, as
// Envoy deployments and nginx's worker_rlimit_nofile do; the hard limit stays the operator's.
void raiseOpenFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  // An unlimited hard limit is not a valid soft limit for descriptors (the kernel caps them at
  // fs.nr_open, 1048576 by default).
  const rlim_t target = rl.rlim_max == RLIM_INFINITY ? rlim_t{1048576} : rl.rlim_max;
  if (rl.rlim_cur >= target) {
    spdlog::debug("open-file limit: {}", static_cast<unsigned long long>(rl.rlim_cur));
    return;
  }
  const rlim_t before = rl.rlim_cur;
  rl.rlim_cur = target;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    spdlog::warn("cannot raise the open-file limit from {} to {}: {}; connections beyond it will "
                 "be refused (raise LimitNOFILE / ulimit -n)",
                 static_cast<unsigned long long>(before), static_cast<unsigned long long>(target),
                 std::strerror(errno));
    return;
  }
  spdlog::info("raised the open-file limit from {} to {} (the hard limit)",
               static_cast<unsigned long long>(before), static_cast<unsigned long long>(target));
}

}  // namespace

int main(int argc, char** argv) {
  remora::ServerOptions options;
  std::string validate_path;
  bool validate = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "remora: %s needs a value\n%s", name, kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--config" || arg == "-c") {
      options.config_path = value("--config");
    } else if (arg == "--validate") {
      // `--validate FILE`, or a bare `--validate` beside `--config FILE` (as in Envoy's
      // `--mode validate -c FILE`): check that file.
      validate = true;
      if (i + 1 < argc && argv[i + 1][0] != '-') validate_path = argv[++i];
    } else if (arg == "--log-level") {
      options.log_level = value("--log-level");
    } else if (arg == "--node-id") {
      options.node_id = value("--node-id");
    } else if (arg == "--control-plane") {
      options.control_plane = value("--control-plane");
    } else if (arg == "--version") {
      std::puts("remora 0.1.0");
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "remora: unknown argument \"%s\"\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (validate) {
    if (validate_path.empty()) validate_path = options.config_path;
    if (validate_path.empty()) {
      std::fprintf(stderr, "remora: --validate needs a file: --validate FILE or --config FILE "
                           "--validate\n%s", kUsage);
      return 2;
    }
    return validateFile(validate_path);
  }
  if (options.config_path.empty()) {
    std::fprintf(stderr, "remora: --config FILE is required\n%s", kUsage);
    return 2;
  }

  auto logger = spdlog::stderr_color_mt("remora");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%Y-%m-%dT%H:%M:%S.%e] [%^%l%$] [%t] %v");
  // The file's log_level applies unless the command line says otherwise; peek at it before the
  // server starts so startup messages obey it too.
  std::string level = options.log_level;
  if (level.empty()) {
    remora::config::LoadResult peek = remora::config::loadFile(options.config_path);
    if (peek.ok()) level = peek.config->log_level;
  }
  if (!level.empty()) {
    auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off") {
      std::fprintf(stderr, "remora: unknown log level \"%s\"\n", level.c_str());
      return 2;
    }
    spdlog::set_level(lvl);
  }
  spdlog::flush_on(spdlog::level::info);
  raiseOpenFileLimit();

  remora::Server server(std::move(options));
  return server.run();
}
