// The HTTP server's deferred and streamed answers (the control plane's needs), and that buffered
// handlers (the proxy admin's) still behave as before.

#include "http/simple_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <thread>

#include "http_client.h"
#include "stream_reader.h"
#include "util.h"

namespace remora::http {
namespace {

using namespace std::chrono_literals;
using itest::Duration;
using itest::HttpClient;

// A SimpleHttpServer on its own loop thread, listening on an ephemeral port.
class ServerThread {
 public:
  template <typename Handler>
  explicit ServerThread(Handler handler, size_t max_body_bytes = 1 << 20) {
    uv_loop_init(&loop_);
    server_ = std::make_unique<SimpleHttpServer>(&loop_, std::move(handler), max_body_bytes);
    EXPECT_EQ(server_->listen({"127.0.0.1", 0}), 0);
    port_ = server_->boundPort();
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      auto* self = static_cast<ServerThread*>(a->data);
      self->server_->close();
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop_.data = this;
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~ServerThread() {
    uv_async_send(&stop_);
    thread_.join();
    server_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  uint16_t port() const { return port_; }
  uv_loop_t* loop() { return &loop_; }

 private:
  uv_loop_t loop_;
  uv_async_t stop_;
  std::unique_ptr<SimpleHttpServer> server_;
  uint16_t port_ = 0;
  std::thread thread_;
};

// Answers `r` after `ms` on the loop, as a handler waiting for an fsync would.
void respondLater(uv_loop_t* loop, ResponderSharedPtr r, SimpleResponse resp, uint64_t ms) {
  struct Later {
    uv_timer_t timer;
    ResponderSharedPtr r;
    SimpleResponse resp;
  };
  auto* later = new Later{{}, std::move(r), std::move(resp)};
  uv_timer_init(loop, &later->timer);
  later->timer.data = later;
  uv_timer_start(
      &later->timer,
      [](uv_timer_t* t) {
        auto* l = static_cast<Later*>(t->data);
        l->r->respond(std::move(l->resp));
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { delete static_cast<Later*>(h->data); });
      },
      ms, 0);
}

TEST(SimpleServerTest, BufferedHandlerKeepsAlive) {
  ServerThread server([](const SimpleRequest& req) {
    return SimpleResponse::text(req.path == "/ok" ? 200 : 404, "path " + req.path + "\n");
  });
  HttpClient client(server.port());
  itest::Response a = client.get("/ok");
  itest::Response b = client.get("/nope");
  ASSERT_TRUE(a.ok()) << a.error;
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "path /ok\n");
  EXPECT_EQ(b.status, 404);
  EXPECT_EQ(client.connectionsOpened(), 1);
}

TEST(SimpleServerTest, DeferredAnswersKeepPipelinedOrder) {
  uv_loop_t* loop = nullptr;
  ServerThread server([&loop](const SimpleRequest& req, const ResponderSharedPtr& r) {
    if (req.path == "/slow") {
      respondLater(loop, r, SimpleResponse::text(200, "slow"), 50);
    } else {
      r->respond(SimpleResponse::text(200, "fast"));
    }
  });
  loop = server.loop();
  HttpClient client(server.port());
  ASSERT_TRUE(
      client.sendRaw("GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"
                     "GET /fast HTTP/1.1\r\nhost: x\r\n\r\n"
                     "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"));
  itest::Response first = client.readResponse();
  itest::Response second = client.readResponse();
  itest::Response third = client.readResponse();
  EXPECT_EQ(first.body, "slow");
  EXPECT_EQ(second.body, "fast");
  EXPECT_EQ(third.body, "slow");
}

TEST(SimpleServerTest, DeferredAnswerAfterClientHalfClose) {
  uv_loop_t* loop = nullptr;
  ServerThread server([&loop](const SimpleRequest&, const ResponderSharedPtr& r) {
    respondLater(loop, r, SimpleResponse::text(200, "late"), 30);
  });
  loop = server.loop();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string req = "GET /x HTTP/1.1\r\nhost: x\r\n\r\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  ::shutdown(fd, SHUT_WR);  // the client is done sending, not done reading
  std::string got;
  char buf[4096];
  pollfd pfd{fd, POLLIN, 0};
  while (::poll(&pfd, 1, 3000) > 0) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
  EXPECT_NE(got.find("late"), std::string::npos) << got;
}

TEST(SimpleServerTest, StreamSendsChunksUntilFinish) {
  auto common = std::make_shared<const std::string>("shared\n");
  ServerThread server([common](const SimpleRequest&, const ResponderSharedPtr& r) {
    HeaderMap headers;
    headers.add("x-test", "1");
    ResponseStreamSharedPtr s = r->startStream(200, "application/x-ndjson", std::move(headers));
    EXPECT_TRUE(s->isOpen());
    s->write(std::string("first\n"));
    s->writeParts({std::make_shared<const std::string>("head-"), common});
    s->write(std::string());  // ignored: an empty chunk would end the body
    s->finish();
    EXPECT_FALSE(s->isOpen());
    EXPECT_FALSE(s->write(std::string("too late\n")));
  });
  control::test::StreamReader reader;
  ASSERT_TRUE(reader.open(server.port(), "/stream"));
  EXPECT_EQ(reader.status(), 200);
  EXPECT_TRUE(reader.chunked());
  EXPECT_EQ(reader.nextLine(2s).value_or("?"), "first");
  EXPECT_EQ(reader.nextLine(2s).value_or("?"), "head-shared");
  EXPECT_TRUE(reader.waitClosed(2s));
  EXPECT_FALSE(reader.nextLine(100ms).has_value());
}

TEST(SimpleServerTest, StreamNoticesTheClientLeaving) {
  std::atomic<int> closed{0};
  std::atomic<bool> write_after_close{true};
  ResponseStreamSharedPtr kept;  // touched only on the loop thread
  ServerThread server([&](const SimpleRequest&, const ResponderSharedPtr& r) {
    kept = r->startStream(200, "text/plain");
    kept->write(std::string("hello\n"));
    kept->setCloseCallback([&] {
      write_after_close = kept->write(std::string("x\n"));
      kept.reset();
      ++closed;
    });
  });
  {
    control::test::StreamReader reader;
    ASSERT_TRUE(reader.open(server.port(), "/stream"));
    EXPECT_EQ(reader.nextLine(2s).value_or("?"), "hello");
  }
  EXPECT_TRUE(itest::waitFor([&] { return closed.load() == 1; }, Duration(3000)));
  EXPECT_FALSE(write_after_close.load());
}

TEST(SimpleServerTest, MalformedRequestGets400AndClose) {
  ServerThread server([](const SimpleRequest&) { return SimpleResponse::text(200, "ok"); });
  HttpClient client(server.port());
  ASSERT_TRUE(client.sendRaw("NOT HTTP AT ALL\r\n\r\n"));
  itest::Response r = client.readResponse();
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body.rfind("malformed request: ", 0), 0u) << "no reason: " << r.body;
  EXPECT_TRUE(client.waitServerClosed(Duration(2000)));
}

TEST(SimpleServerTest, BodyOverTheLimitGets413AndClose) {
  ServerThread server([](const SimpleRequest&) { return SimpleResponse::text(200, "ok"); }, 1000);
  HttpClient client(server.port());
  itest::Response fits = client.post("/x", std::string(1000, 'a'));
  ASSERT_TRUE(fits.ok()) << fits.error;
  EXPECT_EQ(fits.status, 200);
  itest::Response r = client.post("/x", std::string(1001, 'a'));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("larger than 1000 bytes"), std::string::npos) << r.body;
  EXPECT_TRUE(client.waitServerClosed(Duration(2000)));
}

TEST(PercentDecodeTest, Decodes) {
  EXPECT_EQ(percentDecode("a%20b+c%2Fd"), "a b+c/d");
  EXPECT_EQ(percentDecode("100%"), "100%");
  EXPECT_EQ(percentDecode("%zz"), "%zz");
}

TEST(PercentEncodeTest, KeepsUnreservedAndWhatTheCallerAsksFor) {
  EXPECT_EQ(percentEncode("aZ09-._~"), "aZ09-._~");
  EXPECT_EQ(percentEncode("a b/c:d\xff"), "a%20b%2Fc%3Ad%FF");
  EXPECT_EQ(percentEncode("10.0.0.1:8080", ":"), "10.0.0.1:8080");
  EXPECT_EQ(percentDecode(percentEncode("node/ü 1")), "node/ü 1");
  EXPECT_EQ(hexDigitValue('f'), 15);
  EXPECT_EQ(hexDigitValue('A'), 10);
  EXPECT_EQ(hexDigitValue('g'), -1);
}

}  // namespace
}  // namespace remora::http
