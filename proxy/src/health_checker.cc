#include "health_checker.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "tls/client_pump.h"
#include "uv_util.h"

namespace remora {

// One endpoint's schedule and state. Its timer is heap-allocated and freed in its close
// callback, so the Target itself can be destroyed at once.
struct HealthChecker::Target {
  HealthChecker* owner = nullptr;
  EndpointInfo endpoint;
  uv_timer_t* timer = nullptr;
  Probe* probe = nullptr;  // the check in flight, if any
  bool healthy = true;
  uint32_t passes = 0;
  uint32_t failures = 0;
};

// One check: connect (and, for a TLS cluster, handshake), send the request, read the status
// line. Owns its handles; frees itself when both are closed. `target` is cleared when the Target
// goes away first.
struct HealthChecker::Probe {
  Target* target = nullptr;
  uv_tcp_t tcp;
  uv_timer_t timeout;
  uv_connect_t connect_req;
  std::string request;
  std::string response;
  std::unique_ptr<tls::ClientPump> tls;  // TLS clusters
  int open_handles = 2;
  bool done = false;

  void finish(bool ok, const std::string& why) {
    if (done) return;
    done = true;
    uv_timer_stop(&timeout);
    Target* t = target;
    target = nullptr;
    if (t != nullptr) {
      t->probe = nullptr;
      t->owner->finishProbe(*t, ok, why);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), onClose);
    uv_close(reinterpret_cast<uv_handle_t*>(&timeout), onClose);
  }
  static void onClose(uv_handle_t* h) {
    auto* p = static_cast<Probe*>(h->data);
    if (--p->open_handles == 0) delete p;
  }

  // Writes the plain request; the probe owns the bytes until the write completes (write
  // callbacks run before close callbacks, so the probe outlives them).
  void sendPlain() {
    uv_write_t* w = new uv_write_t;
    w->data = this;
    uv_buf_t b = uv_buf_init(request.data(), static_cast<unsigned>(request.size()));
    int rc = uv_write(w, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1, [](uv_write_t* req, int st) {
      auto* pr = static_cast<Probe*>(req->data);
      delete req;
      if (st < 0 && !pr->done) pr->finish(false, "write: " + uvError(st));
    });
    if (rc != 0) {
      delete w;
      finish(false, "write: " + uvError(rc));
    }
  }

  void onConnected() {
    if (tls) {
      if (!tls->start() || !tls->send(request)) {
        finish(false, tls->error());
        return;
      }
    } else {
      sendPlain();
    }
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
          buf->base = new char[suggested];
          buf->len = suggested;
        },
        [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
          auto* pr = static_cast<Probe*>(s->data);
          if (!pr->done) pr->onRead(buf->base, nread);
          delete[] buf->base;
        });
  }

  void onRead(char* data, ssize_t nread) {
    if (tls && nread > 0) {
      auto r = tls->onRead(data, static_cast<size_t>(nread), response);
      if (r == tls::ClientPump::Result::Error) {
        finish(false, tls->error());
        return;
      }
      if (r == tls::ClientPump::Result::Closed) nread = UV_EOF;
    } else if (nread > 0) {
      response.append(data, static_cast<size_t>(nread));
    }
    // "HTTP/1.1 200 " is enough to judge.
    size_t eol = response.find("\r\n");
    if (eol == std::string::npos && nread >= 0) return;
    std::string line = response.substr(0, eol);
    int status = 0;
    if (line.size() >= 12 && line.compare(0, 5, "HTTP/") == 0) status = std::atoi(line.c_str() + 9);
    if (status >= 200 && status < 300) {
      finish(true, "");
    } else if (status != 0) {
      finish(false, "status " + std::to_string(status));
    } else {
      finish(false, nread < 0 ? "connection closed without a response" : "not an HTTP response");
    }
  }
};

HealthChecker::HealthChecker(uv_loop_t* loop, std::string cluster, Callback callback)
    : loop_(loop), cluster_(std::move(cluster)), callback_(std::move(callback)) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::stop() {
  for (auto& [key, t] : targets_) {
    if (t->probe != nullptr) {
      t->probe->target = nullptr;
      t->probe->finish(false, "stopped");
    }
    uv_timer_stop(t->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(t->timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  }
  targets_.clear();
}

void HealthChecker::update(const config::HealthCheck& config,
                           const std::vector<EndpointInfo>& endpoints) {
  config_ = config;
  std::map<std::string, std::unique_ptr<Target>> next;
  for (const auto& e : endpoints) {
    auto it = targets_.find(e.key);
    if (it != targets_.end()) {
      it->second->endpoint = e;
      next[e.key] = std::move(it->second);
      targets_.erase(it);
      continue;
    }
    auto t = std::make_unique<Target>();
    t->owner = this;
    t->endpoint = e;
    t->timer = new uv_timer_t;
    uv_timer_init(loop_, t->timer);
    t->timer->data = t.get();
    // Spread first checks over the interval so endpoints are not probed in lock step.
    uint64_t first = static_cast<uint64_t>(config_.interval.count()) * next.size() /
                     std::max<size_t>(1, endpoints.size());
    schedule(*t, first);
    next[e.key] = std::move(t);
  }
  stop();  // what is left in targets_ was removed from the cluster
  targets_ = std::move(next);
}

void HealthChecker::schedule(Target& t, uint64_t delay_ms) {
  uv_timer_start(
      t.timer,
      [](uv_timer_t* timer) {
        auto* target = static_cast<Target*>(timer->data);
        target->owner->startProbe(*target);
      },
      delay_ms, 0);
}

void HealthChecker::startProbe(Target& t) {
  auto* p = new Probe();
  p->target = &t;
  t.probe = p;
  uv_tcp_init(loop_, &p->tcp);
  uv_timer_init(loop_, &p->timeout);
  p->tcp.data = p;
  p->timeout.data = p;
  p->connect_req.data = p;
  p->request = "GET " + config_.path + " HTTP/1.1\r\nhost: " + cluster_ +
               "\r\nuser-agent: remora-health-check\r\nconnection: close\r\n\r\n";
  if (t.endpoint.tls) {
    p->tls = std::make_unique<tls::ClientPump>(
        tls::Session::client(t.endpoint.tls, t.endpoint.key, t.endpoint.config.address.host),
        reinterpret_cast<uv_stream_t*>(&p->tcp));
  }
  uv_timer_start(
      &p->timeout,
      [](uv_timer_t* timer) {
        static_cast<Probe*>(timer->data)->finish(false, "no answer within the check timeout");
      },
      static_cast<uint64_t>(config_.timeout.count()), 0);
  int rc = uv_tcp_connect(&p->connect_req, &p->tcp,
                          reinterpret_cast<const sockaddr*>(&t.endpoint.addr),
                          [](uv_connect_t* req, int status) {
                            auto* probe = static_cast<Probe*>(req->data);
                            if (probe->done) return;
                            if (status < 0) {
                              probe->finish(false, "connect: " + uvError(status));
                              return;
                            }
                            probe->onConnected();
                          });
  if (rc != 0) p->finish(false, "connect: " + uvError(rc));
}

void HealthChecker::finishProbe(Target& t, bool ok, const std::string& why) {
  if (ok) {
    t.failures = 0;
    ++t.passes;
    if (!t.healthy && t.passes >= config_.healthy_threshold) {
      t.healthy = true;
      spdlog::info("health check: endpoint {} of cluster {} is healthy again ({} passing checks)",
                   t.endpoint.key, cluster_, t.passes);
      if (callback_) callback_(t.endpoint.key, true);
    }
  } else {
    t.passes = 0;
    ++t.failures;
    if (t.healthy && t.failures >= config_.unhealthy_threshold) {
      t.healthy = false;
      spdlog::warn("health check: endpoint {} of cluster {} is unhealthy after {} failed "
                   "check(s) (last: {} on GET {}); it leaves rotation until it passes again",
                   t.endpoint.key, cluster_, t.failures, why, config_.path);
      if (callback_) callback_(t.endpoint.key, false);
    }
  }
  schedule(t, static_cast<uint64_t>(config_.interval.count()));
}

}  // namespace remora
