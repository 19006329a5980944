// deploy/container: the Dockerfile's shape (multi-stage Debian 12, Release build through the
// presets, non-root runtime with only runtime libraries: every shared library this build's
// binaries link comes from a package the runtime stage installs), and remora-register, the
// registration loop of the Kubernetes pods and the mesh demo, against the real control plane.
// Docker itself is not needed.

#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "control_process.h"
#include "deploy_util.h"
#include "fake_upstream.h"
#include "process.h"

namespace remora::deploy_test {
namespace {

std::string dockerfile() { return itest::readFile(sourcePath("deploy/container/Dockerfile")); }

// The Dockerfile's logical lines (continuations joined), comments dropped.
std::vector<std::string> instructions(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  std::string current;
  while (std::getline(in, line)) {
    if (current.empty() && (line.empty() || line[0] == '#')) continue;
    const bool continued = !line.empty() && line.back() == '\\';
    current += continued ? line.substr(0, line.size() - 1) : line;
    if (!continued) {
      out.push_back(current);
      current.clear();
    }
  }
  return out;
}

TEST(ContainerTest, DockerfileIsMultiStageDebian12NonRoot) {
  const std::vector<std::string> lines = instructions(dockerfile());
  ASSERT_FALSE(lines.empty()) << "deploy/container/Dockerfile is missing";
  std::vector<std::string> froms;
  std::string user;
  bool presets = false;
  bool build_only_deps = false;
  std::string entrypoint;
  for (const std::string& l : lines) {
    if (l.rfind("FROM ", 0) == 0) froms.push_back(l);
    if (l.rfind("USER ", 0) == 0) user = l.substr(5);
    if (l.rfind("ENTRYPOINT ", 0) == 0) entrypoint = l.substr(11);
    presets |= l.find("cmake --preset release") != std::string::npos &&
               l.find("cmake --build --preset release") != std::string::npos;
    build_only_deps |= l.find("scripts/install-deps.sh --build-only") != std::string::npos;
  }
  ASSERT_EQ(froms.size(), 2u);
  EXPECT_TRUE(std::regex_search(froms[0], std::regex(R"(^FROM debian:\$\{DEBIAN_TAG\} AS build$)")))
      << froms[0];
  EXPECT_TRUE(std::regex_search(froms[1], std::regex(R"(^FROM debian:\$\{DEBIAN_TAG\}-slim$)")))
      << froms[1];
  EXPECT_NE(dockerfile().find("ARG DEBIAN_TAG=12\n"), std::string::npos);
  EXPECT_TRUE(presets) << "the build stage must build with the release presets";
  EXPECT_TRUE(build_only_deps) << "the build stage installs packages through install-deps.sh";
  // Numeric, so Kubernetes' runAsNonRoot can check it; matches the manifests' runAsUser.
  EXPECT_EQ(user, "10001:10001");
  EXPECT_EQ(entrypoint, R"(["/usr/local/bin/remora"])");
  EXPECT_TRUE(std::filesystem::exists(sourcePath("deploy/container/Dockerfile.dockerignore")));

  // install-deps.sh knows the flag.
  const std::string deps = itest::readFile(sourcePath("scripts/install-deps.sh"));
  EXPECT_NE(deps.find("--build-only"), std::string::npos);
}

// Every library the binaries of this build link is in the base image or installed by the
// runtime stage: resolve each to its Debian package with dpkg -S and look for it.
TEST(ContainerTest, RuntimeStageInstallsEveryLinkedLibrary) {
  itest::TempDir tmp;
  const std::optional<std::string> ldd = findTool("ldd");
  const std::optional<std::string> dpkg = findTool("dpkg");
  if (!ldd || !dpkg) GTEST_SKIP() << "needs ldd and dpkg (a Debian system)";

  std::string runtime_install;
  bool in_runtime = false;
  for (const std::string& l : instructions(dockerfile())) {
    if (l.rfind("FROM ", 0) == 0) in_runtime = l.find("-slim") != std::string::npos;
    if (in_runtime && l.find("apt-get install") != std::string::npos) runtime_install = l;
  }
  ASSERT_FALSE(runtime_install.empty()) << "no apt-get install in the runtime stage";
  std::set<std::string> installed;
  std::istringstream words(runtime_install);
  for (std::string w; words >> w;) installed.insert(w);
  // Debian 12 slim has these already (Essential or required by apt).
  const std::set<std::string> base = {"libc6", "libstdc++6", "libgcc-s1"};

  // Every library path the three binaries load, then one dpkg -S for all of them (it is slow).
  std::map<std::string, std::string> user_of;  // library path -> a binary that links it
  for (const char* bin : {"remora", "remora-control", "remoractl"}) {
    CommandResult l = runCommand(tmp, *ldd, {buildPath(bin).string()});
    ASSERT_EQ(l.exit_code, 0) << l.output;
    std::istringstream lines(l.output);
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, std::regex(R"(=> (/\S+))"))) continue;
      const std::string lib = m[1];
      // The sanitizer runtimes of an ASan build are not what the image ships.
      if (lib.find("libasan") != std::string::npos || lib.find("libubsan") != std::string::npos) {
        continue;
      }
      user_of.emplace(lib, bin);
    }
  }
  ASSERT_FALSE(user_of.empty());
  // dpkg knows a file by the path its package installed it under: /lib and /usr/lib are the
  // same directory on Debian 12 (merged /usr), so ask for both spellings.
  std::vector<std::string> args = {"-S"};
  for (const auto& [lib, bin] : user_of) {
    args.push_back(lib);
    args.push_back(lib.rfind("/usr/", 0) == 0 ? lib.substr(4) : "/usr" + lib);
  }
  CommandResult owners = runCommand(tmp, *dpkg, args);  // exits 1: half the spellings are unknown
  std::map<std::string, std::string> package_of;        // path -> package
  std::istringstream lines(owners.output);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (!std::regex_match(line, m, std::regex(R"(([^:, ]+)(?::[a-z0-9]+)?: (/\S+))"))) continue;
    package_of[m[2]] = m[1];
  }
  for (const auto& [lib, bin] : user_of) {
    SCOPED_TRACE(lib);
    const std::string alt = lib.rfind("/usr/", 0) == 0 ? lib.substr(4) : "/usr" + lib;
    const std::string package = package_of.count(lib) ? package_of[lib] : package_of[alt];
    ASSERT_FALSE(package.empty()) << "no Debian package owns " << lib << ":\n" << owners.output;
    EXPECT_TRUE(installed.count(package) == 1 || base.count(package) == 1)
        << bin << " links " << lib << " from package " << package
        << ", which the runtime stage does not install";
  }
}

// remora-register against the real control plane: registers, heartbeats, registers again when
// the control plane forgot the instance, and deregisters on SIGTERM.
TEST(ContainerTest, RemoraRegisterKeepsTheInstanceRegistered) {
  itest::TempDir tmp;
  control::test::ControlProcess cp(tmp);
  ASSERT_TRUE(cp.start());
  const std::string script = sourcePath("deploy/container/remora-register").string();
  itest::Process reg("remora-register", script, {}, tmp / "register.log",
                     {{"REMORA_SERVICE", "orders"},
                      {"REMORA_INSTANCE", "orders-7"},
                      {"REMORA_ADDRESS", "127.0.0.1:15001"},
                      {"REMORA_WEIGHT", "3"},
                      {"REMORA_TTL", "3s"},  // heartbeat every second
                      {"REMORA_CONTROL_SERVER", cp.address()},
                      {"REMORACTL", REMORACTL_BIN}});
  ASSERT_TRUE(reg.start());
  auto instance = [&] { return cp.get("/v1/services/orders/instances/orders-7"); };
  ASSERT_TRUE(itest::waitFor([&] { return instance().status == 200; }, Duration(10000)))
      << reg.log();
  control::test::JsonResponse r = instance();
  EXPECT_EQ(r.body.value("address", ""), "127.0.0.1:15001");
  EXPECT_EQ(r.body.value("weight", 0), 3);
  EXPECT_EQ(r.body.value("status", ""), "UP");

  // Heartbeats renew it: last_heartbeat moves.
  const std::string first = r.body.value("last_heartbeat", "");
  EXPECT_TRUE(itest::waitFor(
      [&] { return instance().body.value("last_heartbeat", "") != first; }, Duration(5000)))
      << reg.log();

  // The control plane forgets it (as after a restart without state): it comes back.
  ASSERT_EQ(cp.call("DELETE", "/v1/services/orders/instances/orders-7").status, 200);
  EXPECT_TRUE(itest::waitFor([&] { return instance().status == 200; }, Duration(5000)))
      << reg.log();
  EXPECT_NE(reg.log().find("registering again"), std::string::npos) << reg.log();

  // SIGTERM: deregistered at once, exit 0.
  ASSERT_TRUE(reg.signal(SIGTERM));
  EXPECT_EQ(reg.waitExit(Duration(10000)), 0) << reg.log();
  EXPECT_EQ(instance().status, 404);
  EXPECT_NE(reg.log().find("deregistered"), std::string::npos) << reg.log();
}

// With REMORA_WAIT_FOR_READY it registers only once the sidecar's /ready answers 200.
TEST(ContainerTest, RemoraRegisterWaitsForTheSidecarToBeReady) {
  itest::TempDir tmp;
  control::test::ControlProcess cp(tmp);
  ASSERT_TRUE(cp.start());
  // A stand-in for the sidecar's admin API: /ready answers 503 (not ready) until cleared.
  itest::FakeUpstream sidecar(tmp, "sidecar");
  ASSERT_TRUE(sidecar.start());
  ASSERT_TRUE(sidecar.control("status=503"));
  itest::Process reg("remora-register", sourcePath("deploy/container/remora-register").string(),
                     {}, tmp / "register.log",
                     {{"REMORA_SERVICE", "orders"},
                      {"REMORA_INSTANCE", "orders-8"},
                      {"REMORA_ADDRESS", "127.0.0.1:15001"},
                      {"REMORA_TTL", "3s"},
                      {"REMORA_CONTROL_SERVER", cp.address()},
                      {"REMORACTL", REMORACTL_BIN},
                      {"REMORA_WAIT_FOR_READY", sidecar.address()}});
  ASSERT_TRUE(reg.start());
  // Two polls answered 503: still not registered.
  ASSERT_TRUE(itest::waitFor([&] {
    auto st = sidecar.stats();
    return st && st->requests >= 2;
  }, Duration(10000))) << reg.log();
  EXPECT_EQ(cp.get("/v1/services/orders/instances/orders-8").status, 404) << reg.log();
  // Ready: it registers.
  ASSERT_TRUE(sidecar.control("clear"));
  EXPECT_TRUE(itest::waitFor(
      [&] { return cp.get("/v1/services/orders/instances/orders-8").status == 200; },
      Duration(5000)))
      << reg.log();
  ASSERT_TRUE(reg.signal(SIGTERM));
  EXPECT_EQ(reg.waitExit(Duration(10000)), 0) << reg.log();
}

TEST(ContainerTest, RemoraRegisterRefusesMissingSettings) {
  itest::TempDir tmp;
  CommandResult r = runCommand(tmp, sourcePath("deploy/container/remora-register").string(), {},
                               Duration(10000), {{"REMORA_SERVICE", "orders"}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("REMORA_INSTANCE is not set"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace remora::deploy_test
