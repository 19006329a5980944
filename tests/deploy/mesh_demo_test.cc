// scripts/mesh-demo.sh (`make mesh-demo`) in its non-interactive --check mode: the whole mesh on
// loopback (remora-control, four app + sidecar pairs registered through remora-register, a curl
// traffic loop). The script itself requires that every proxy ACKs, that traffic flows, that a
// failing instance is retried around and its breaker opens, and that a pushed policy is ACKed by
// every proxy; the test checks its verdict and the numbers of its summary line.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <random>
#include <regex>
#include <string>

#include "deploy_util.h"
#include "process.h"

namespace remora::deploy_test {
namespace {

bool portFree(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// The demo uses fixed offsets from its base port: base, and base+10k .. base+10k+3 for k = 1..4.
// Bases are drawn below the kernel's ephemeral range (32768+), where the other tests' ports
// (freePort()) come from, and taken only if every port is free right now.
uint16_t freeBasePort() {
  std::mt19937 rng(static_cast<unsigned>(::getpid()) ^ std::random_device{}());
  std::uniform_int_distribution<int> pick(200, 300);
  for (int attempt = 0; attempt < 50; ++attempt) {
    const uint16_t base = static_cast<uint16_t>(pick(rng) * 100);
    bool all = portFree(base);
    for (int k = 1; k <= 4 && all; ++k) {
      for (int off = 0; off < 4 && all; ++off) all = portFree(static_cast<uint16_t>(base + 10 * k + off));
    }
    if (all) return base;
  }
  return 0;
}

std::map<std::string, std::string> summaryOf(const std::string& log) {
  std::map<std::string, std::string> out;
  std::smatch m;
  if (!std::regex_search(log, m, std::regex("mesh-demo: summary ([^\n]*)"))) return out;
  const std::string line = m[1];
  const std::regex kv(R"((\w+)=(\S+))");
  for (auto it = std::sregex_iterator(line.begin(), line.end(), kv); it != std::sregex_iterator();
       ++it) {
    out[(*it)[1]] = (*it)[2];
  }
  return out;
}

TEST(MeshDemoTest, CheckModeSeesTrafficRetriesBreakersAndAcks) {
  ASSERT_TRUE(std::filesystem::exists(REMORA_BIN)) << REMORA_BIN;
  itest::TempDir tmp;
  const uint16_t base = freeBasePort();
  ASSERT_NE(base, 0) << "no free block of ports for the demo between 20000 and 30100";

  itest::Process demo("mesh-demo", sourcePath("scripts/mesh-demo.sh").string(),
                      {"--check", "--duration", "5s", "--base-port", std::to_string(base),
                       "--work-dir", (tmp / "mesh").string()},
                      tmp / "mesh-demo.log", {{"BUILD_DIR", REMORA_BUILD_DIR}});
  // On a timeout, SIGTERM lets the script stop its processes in order before SIGKILL.
  demo.setStopGrace(Duration(15000));
  ASSERT_TRUE(demo.start());
  const std::optional<int> code = demo.waitExit(Duration(90000));
  const std::string log = demo.log();
  ASSERT_TRUE(code.has_value()) << "the demo did not finish within 90 s:\n" << log;
  EXPECT_EQ(*code, 0) << log;

  const std::map<std::string, std::string> s = summaryOf(log);
  ASSERT_FALSE(s.empty()) << "no summary line:\n" << log;
  EXPECT_GT(std::stoi(s.at("requests")), 20) << log;
  EXPECT_GT(std::stoi(s.at("ok")), 0) << log;
  EXPECT_GE(std::stoi(s.at("orders_retries")), 1) << log;
  EXPECT_GE(std::stoi(s.at("breaker_opened")), 1) << log;
  EXPECT_EQ(s.at("acked"), "4/4") << log;
  EXPECT_EQ(s.at("failures"), "0") << log;
  EXPECT_EQ(s.at("unclean_exits"), "0") << log;
  std::cout << "[ info ] " << log.substr(log.find("mesh-demo: summary")).substr(0, 200) << "\n";
}

}  // namespace
}  // namespace remora::deploy_test
