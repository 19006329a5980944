// libFuzzer target: the proxy's YAML config loader.
//
// Input: one YAML document, as an operator (or a control-plane policy converted to YAML) would
// write it. Checks, beyond "no crash, no leak, no undefined behaviour":
//   - a rejected document has at least one error and every error has a reason;
//   - an accepted document renders to JSON (admin GET /config) without throwing, i.e. every string
//     the validator lets through is valid UTF-8 (nlohmann's strict dump throws otherwise, and an
//     exception there would take the admin thread down);
//   - the JSON loads back through loadString() into a config whose JSON is identical: json.h
//     promises that round trip, and the control plane relies on it for pushed clusters.
// Any failed check aborts with the input's config and the reason on stderr.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "remora/config/config.h"
#include "remora/config/json.h"

namespace {

[[noreturn]] void fail(const std::string& what, std::string_view input, const std::string& detail) {
  std::fprintf(stderr, "config_fuzzer: %s\n--- input ---\n%.*s\n--- detail ---\n%s\n",
               what.c_str(), static_cast<int>(input.size()), input.data(), detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Real configs are a few KiB; huge inputs only make the fuzzer slower.
  if (size > 64 * 1024) return -1;
  const std::string_view yaml(reinterpret_cast<const char*>(data), size);

  remora::config::LoadResult result = remora::config::loadString(yaml, "fuzz.yaml");
  if (!result.ok()) {
    if (result.errors.empty()) fail("rejected without an error", yaml, "");
    for (const auto& e : result.errors) {
      if (e.reason.empty()) fail("an error without a reason", yaml, e.format());
    }
    (void)result.formatErrors();
    return 0;
  }

  const nlohmann::json json = remora::config::toJson(*result.config);
  std::string dumped;
  try {
    dumped = json.dump(2);  // exactly what the admin API's GET /config does
  } catch (const nlohmann::json::exception& e) {
    fail("an accepted config cannot be rendered as JSON (GET /config would throw)", yaml, e.what());
  }

  remora::config::LoadResult again = remora::config::loadString(dumped, "roundtrip.json");
  if (!again.ok()) {
    fail("toJson() output does not load back", yaml, dumped + "\n" + again.formatErrors());
  }
  const nlohmann::json json2 = remora::config::toJson(*again.config);
  if (json2 != json) {
    fail("the round trip changed the config", yaml, dumped + "\n--- after ---\n" + json2.dump(2));
  }
  return 0;
}
