#include "resilience/resource_limits.h"

#include <cassert>

namespace remora::resilience {

std::string_view toString(ResourceKind kind) {
  switch (kind) {
    case ResourceKind::Connections:
      return "connections";
    case ResourceKind::PendingRequests:
      return "pending_requests";
    case ResourceKind::Requests:
      return "requests";
    case ResourceKind::Retries:
      return "retries";
  }
  return "unknown";
}

ResourceLimits::ResourceLimits(const config::Limits& limits) { reconfigure(limits); }

void ResourceLimits::reconfigure(const config::Limits& limits) {
  counter(ResourceKind::Connections).max.store(limits.max_connections, std::memory_order_relaxed);
  counter(ResourceKind::PendingRequests)
      .max.store(limits.max_pending_requests, std::memory_order_relaxed);
  counter(ResourceKind::Requests).max.store(limits.max_requests, std::memory_order_relaxed);
  counter(ResourceKind::Retries).max.store(limits.max_retries, std::memory_order_relaxed);
}

bool ResourceLimits::tryAcquire(ResourceKind kind) {
  Counter& c = counter(kind);
  const uint64_t max = c.max.load(std::memory_order_relaxed);
  uint64_t active = c.active.load(std::memory_order_relaxed);
  // The limit is checked against the very value the CAS replaces, so two threads racing for the
  // last unit cannot both win (fetch_add-then-undo would also let a third thread see a transient
  // overshoot and be refused for nothing).
  do {
    if (active >= max) return false;
  } while (!c.active.compare_exchange_weak(active, active + 1, std::memory_order_relaxed));
  return true;
}

void ResourceLimits::release(ResourceKind kind) {
  Counter& c = counter(kind);
  uint64_t active = c.active.load(std::memory_order_relaxed);
  do {
    assert(active > 0 && "ResourceLimits::release without a matching tryAcquire");
    if (active == 0) return;
  } while (!c.active.compare_exchange_weak(active, active - 1, std::memory_order_relaxed));
}

uint64_t ResourceLimits::active(ResourceKind kind) const {
  return counter(kind).active.load(std::memory_order_relaxed);
}

uint32_t ResourceLimits::max(ResourceKind kind) const {
  return counter(kind).max.load(std::memory_order_relaxed);
}

ResourceGuard ResourceGuard::tryAcquire(ResourceLimits& limits, ResourceKind kind) {
  if (!limits.tryAcquire(kind)) return ResourceGuard();
  return ResourceGuard(&limits, kind);
}

ResourceGuard& ResourceGuard::operator=(ResourceGuard&& other) noexcept {
  if (this != &other) {
    release();
    limits_ = other.limits_;
    kind_ = other.kind_;
    other.limits_ = nullptr;
  }
  return *this;
}

void ResourceGuard::release() {
  if (limits_ == nullptr) return;
  limits_->release(kind_);
  limits_ = nullptr;
}

}  // namespace remora::resilience
