// remora-control: the control plane (service registry, cluster policies, discovery pushes).
// See control/README.md for the API and the discovery protocol.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>

#include "control_config.h"
#include "control_server.h"

namespace {

constexpr const char* kUsage =
    "usage: remora-control --config FILE [--log-level LEVEL]\n"
    "       remora-control --validate FILE   (or: remora-control --config FILE --validate)\n"
    "\n"
    "  --config FILE       run the control plane with this YAML config\n"
    "  --validate FILE     check FILE and exit 0 (valid) or 1 (errors as file:line:col: reason)\n"
    "  --log-level LEVEL   trace|debug|info|warn|error|critical|off (overrides the file)\n"
    "  --version           print the version and exit\n"
    "\n"
    "signals: SIGTERM/SIGINT stop (pending state writes finish first), SIGHUP re-reads the\n"
    "tokens file\n";

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string validate_path;
  bool validate = false;
  std::string log_level;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "remora-control: %s needs a value\n%s", arg.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--config" || arg == "-c") {
      config_path = value();
    } else if (arg == "--validate") {
      // `--validate FILE`, or a bare `--validate` beside `--config FILE`.
      validate = true;
      if (i + 1 < argc && argv[i + 1][0] != '-') validate_path = argv[++i];
    } else if (arg == "--log-level") {
      log_level = value();
    } else if (arg == "--version") {
      std::puts("remora-control 0.1.0");
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "remora-control: unknown argument \"%s\"\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  const std::string path = validate_path.empty() ? config_path : validate_path;
  if (path.empty()) {
    std::fprintf(stderr, "remora-control: --config FILE is required\n%s", kUsage);
    return 2;
  }
  remora::control::ControlConfigResult loaded = remora::control::loadControlConfigFile(path);
  if (!loaded.ok()) {
    std::fputs(loaded.formatErrors().c_str(), stderr);
    std::fprintf(stderr, "%s: %zu error(s)\n", path.c_str(), loaded.errors.size());
    return 1;
  }
  if (validate) {
    std::printf("%s: OK (%zu cluster polic%s)\n", path.c_str(), loaded.config->clusters.size(),
                loaded.config->clusters.size() == 1 ? "y" : "ies");
    return 0;
  }

  auto logger = spdlog::stderr_color_mt("remora-control");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%Y-%m-%dT%H:%M:%S.%e] [%^%l%$] %v");
  const std::string level = log_level.empty() ? loaded.config->log_level : log_level;
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    std::fprintf(stderr, "remora-control: unknown log level \"%s\"\n", level.c_str());
    return 2;
  }
  spdlog::set_level(lvl);
  spdlog::flush_on(spdlog::level::info);

  remora::control::ControlServer server(std::move(*loaded.config));
  return server.run();
}
