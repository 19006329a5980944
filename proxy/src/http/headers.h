#pragma once

// HTTP/1.1 header storage and the header rules of RFC 9110 a proxy must apply.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora::http {

// Ordered header list. Names are stored lower-case (HTTP/1 names are case-insensitive, and
// lower-casing once at parse time makes every later lookup a plain compare, as Envoy does).
class HeaderMap {
 public:
  using Entry = std::pair<std::string, std::string>;

  // `name` must already be lower-case.
  const std::string* get(std::string_view name) const;
  size_t count(std::string_view name) const;
  void add(std::string name, std::string value) {
    entries_.emplace_back(std::move(name), std::move(value));
  }
  // Replaces every entry of `name` by one.
  void set(std::string_view name, std::string value);
  void remove(std::string_view name);
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }
  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }
  std::vector<Entry>& entries() { return entries_; }

 private:
  std::vector<Entry> entries_;
};

void toLowerInPlace(std::string& s);
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// True for the hop-by-hop headers of RFC 9110 section 7.6.1 (plus the legacy ones proxies strip).
bool isHopByHopHeader(std::string_view lower_name);

// Removes the hop-by-hop headers, every header named in `connection`, and the message framing
// headers (content-length, transfer-encoding): the proxy re-frames each hop itself.
void removeHopByHopHeaders(HeaderMap& headers);

// Checks a parsed request head against the rules of RFC 9110/9112 that llhttp leaves to the
// application and whose violation makes a request mean different things to different servers
// (request smuggling): the target must be origin-form ("/path?query", or "*" for OPTIONS) without
// a fragment, header names must be tokens (no whitespace before the colon), values must not hold
// CR, LF or NUL (what obs-fold line folding leaves behind), at most one Host, and no
// Transfer-Encoding in HTTP/1.0. Returns "" when the head may be forwarded, otherwise the reason
// for a 400.
std::string_view requestHeadError(std::string_view method, std::string_view target,
                                  int http_minor, const HeaderMap& headers);

// Reason phrase for a status code ("Unknown" for codes without one).
std::string_view reasonPhrase(int status);

// Appends "name: value\r\n" for every entry.
void serializeHeaders(const HeaderMap& headers, std::string& out);

}  // namespace remora::http
