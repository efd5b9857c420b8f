// native.cc — the kv operations as native FlatBuffers frames. (Being written: not registered yet.)
#include "core.h"
namespace keel::kv_module {
void register_native_handlers(bus&) {}
}  // namespace keel::kv_module
