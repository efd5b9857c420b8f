// v2.cc — etcd's v2 keys API. (Being written: see the issue; not registered yet.)
#include "core.h"
namespace keel::kv_module {
void register_v2_routes(http_router&) {}
}  // namespace keel::kv_module
