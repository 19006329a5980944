// fake-upstream: see server.h and README.md.
//
//   fake-upstream [--port N] [--address 127.0.0.1] [--name NAME] [--quiet]
//
// Prints exactly one line "listening on ADDRESS:PORT" to stdout once it accepts connections, so a
// test or script can learn the port it picked; logs go to stderr. SIGTERM/SIGINT exit 0.

#include <pthread.h>
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "server.h"

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: fake-upstream [--port N] [--address IPv4] [--name NAME] [--quiet]\n");
}

}  // namespace

int main(int argc, char** argv) {
  remora::fake::ServerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fake-upstream: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--port") {
      std::string_view v = value();
      unsigned port = 0;
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), port);
      if (ec != std::errc() || ptr != v.data() + v.size() || port > 65535) {
        std::fprintf(stderr, "fake-upstream: bad port '%s'\n", std::string(v).c_str());
        return 2;
      }
      options.port = static_cast<uint16_t>(port);
    } else if (arg == "--address") {
      options.address = value();
    } else if (arg == "--name") {
      options.name = value();
    } else if (arg == "--quiet") {
      options.quiet = true;
    } else if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    } else {
      std::fprintf(stderr, "fake-upstream: unknown argument '%s'\n", argv[i]);
      usage();
      return 2;
    }
  }

  // Termination signals are taken synchronously by this thread; every other thread inherits the
  // blocked mask, so a signal can never interrupt a connection thread.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  remora::fake::Server server(options);
  std::string error;
  if (!server.listen(error)) {
    std::fprintf(stderr, "fake-upstream: %s\n", error.c_str());
    return 1;
  }
  server.start();
  std::printf("listening on %s:%u\n", options.address.c_str(), server.port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  if (!options.quiet) {
    std::fprintf(stderr, "fake-upstream[%s]: %s, stopping\n", options.name.c_str(), strsignal(sig));
  }
  server.stop();
  return 0;
}
