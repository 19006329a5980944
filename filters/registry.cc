// The filter chain, in order. Adding a filter: a folder filters/<name>/ and one line here.

#include "bulkhead/filter.h"
#include "rate_limit/filter.h"
#include "stream.h"

namespace remora {

const std::vector<const StreamFilterFactory*>& registeredFilterFactories() {
  // Rate limiting first: a request over the route's rate should not take a bulkhead slot.
  static const filters::RateLimitFilterFactory rate_limit;
  static const filters::BulkheadFilterFactory bulkhead;
  static const std::vector<const StreamFilterFactory*> factories = {&rate_limit, &bulkhead};
  return factories;
}

}  // namespace remora
