// The atomic state file and the group-committing persister, on a real loop and a temp dir.

#include "persistence.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <filesystem>

#include "fake_time_source.h"
#include "state.h"
#include "util.h"

namespace remora::control {
namespace {

using itest::TempDir;

class LoopTest : public ::testing::Test {
 protected:
  LoopTest() { uv_loop_init(&loop_); }
  ~LoopTest() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  // Runs the loop until `done` or `timeout`; a timer keeps UV_RUN_ONCE from blocking forever.
  bool runUntil(const std::function<bool()>& done,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t*) {}, 10, 10);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return done();
  }

  uv_loop_t loop_;
};

TEST(WriteFileAtomicTest, ReplacesTheFileAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = (dir / "state.json").string();
  std::string error;
  ASSERT_TRUE(writeFileAtomic(path, "one", error)) << error;
  ASSERT_TRUE(writeFileAtomic(path, "two", error)) << error;
  EXPECT_EQ(itest::readFile(path), "two");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  std::optional<std::string> back = readStateFile(path, error);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, "two");
}

TEST(WriteFileAtomicTest, ReportsWhyItFailed) {
  TempDir dir;
  std::string error;
  EXPECT_FALSE(writeFileAtomic((dir / "missing" / "state.json").string(), "x", error));
  EXPECT_NE(error.find("missing"), std::string::npos) << error;
  EXPECT_FALSE(readStateFile((dir / "absent").string(), error).has_value());
  EXPECT_TRUE(error.empty()) << "an absent file is not an error";
}

TEST_F(LoopTest, GroupCommitsABurstIntoFewWrites) {
  TempDir dir;
  const std::string path = (dir / "state.json").string();
  uint64_t version = 0;
  StatePersister persister(&loop_, path, [&] {
    const std::string data = "version " + std::to_string(version);
    return StatePersister::Capture{version, [data] { return data; }};
  });
  std::vector<uint64_t> durable_seen;
  persister.setDurableCallback([&](uint64_t v) { durable_seen.push_back(v); });
  int acknowledged = 0;
  for (int i = 0; i < 100; ++i) {
    ++version;
    persister.changed(version);
    persister.whenDurable(version, [&](const std::string& error) {
      EXPECT_EQ(error, "");
      ++acknowledged;
    });
  }
  ASSERT_TRUE(runUntil([&] { return acknowledged == 100 && persister.idle(); }));
  EXPECT_EQ(persister.durableVersion(), 100u);
  EXPECT_LE(persister.writes(), 3u) << "one write in flight, everything else in the next";
  EXPECT_EQ(itest::readFile(path), "version 100");
  ASSERT_FALSE(durable_seen.empty());
  EXPECT_EQ(durable_seen.back(), 100u);
  // Already durable: answered at once.
  bool immediate = false;
  persister.whenDurable(50, [&](const std::string&) { immediate = true; });
  EXPECT_TRUE(immediate);
}

TEST_F(LoopTest, InMemoryModeIsDurableAtOnce) {
  StatePersister persister(&loop_, "", [] { return StatePersister::Capture{0, nullptr}; });
  persister.changed(7);
  bool done = false;
  persister.whenDurable(7, [&](const std::string& error) { done = error.empty(); });
  EXPECT_TRUE(done);
  EXPECT_EQ(persister.durableVersion(), 7u);
}

TEST_F(LoopTest, AFailedWriteIsReportedAndRetried) {
  TempDir dir;
  const std::filesystem::path sub = dir / "later";
  const std::string path = (sub / "state.json").string();
  StatePersister persister(&loop_, path, [] {
    return StatePersister::Capture{1, [] { return std::string("v1"); }};
  });
  std::string first_error;
  bool answered = false;
  persister.changed(1);
  persister.whenDurable(1, [&](const std::string& error) {
    first_error = error;
    answered = true;
  });
  ASSERT_TRUE(runUntil([&] { return answered; }));
  EXPECT_FALSE(first_error.empty());
  EXPECT_EQ(persister.durableVersion(), 0u);
  // The directory appears; the retry succeeds without another change.
  std::filesystem::create_directories(sub);
  ASSERT_TRUE(runUntil([&] { return persister.durableVersion() == 1; }));
  EXPECT_EQ(itest::readFile(path), "v1");
}

TEST_F(LoopTest, StateSurvivesAWriteAndALoad) {
  TempDir dir;
  const std::string path = (dir / "state.json").string();
  FakeTimeSource time;
  ControlState state(time, 100);
  InstanceSpec s;
  s.address = *config::parseAddress("10.0.0.1:8080");
  s.weight = 5;
  state.registry().upsert("orders", "a", s);
  state.commit("alice", "register orders/a");
  std::vector<std::string> errors;
  state.setPolicy(*parsePolicy(R"({"lb_policy": "random"})", "orders", "t", errors));
  state.commit("alice", "policy set orders");

  StatePersister persister(&loop_, path, [&] {
    auto copy = std::make_shared<const ControlState>(state);
    return StatePersister::Capture{copy->version(), [copy] { return copy->serializeState(); }};
  });
  persister.changed(state.version());
  ASSERT_TRUE(runUntil([&] { return persister.durableVersion() == state.version(); }));

  std::string error;
  std::optional<std::string> text = readStateFile(path, error);
  ASSERT_TRUE(text.has_value()) << error;
  ControlState loaded(time, 100);
  ASSERT_TRUE(loaded.loadStateJson(nlohmann::json::parse(*text), error)) << error;
  EXPECT_EQ(loaded.version(), 2u);
  EXPECT_EQ(loaded.clustersJson(), state.clustersJson());
  EXPECT_EQ(loaded.history().size(), 2u);
}

}  // namespace
}  // namespace remora::control
