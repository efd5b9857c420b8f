// A minimal test module for host_test, shaped by compile definitions:
//   TM_NAME=<name>       the name its descriptor gives (required)
//   TM_ABI=<n>           the ABI version it claims (default KEEL_MODULE_ABI_VERSION)
//   TM_DEPENDS=<name>    one module it depends on
//   TM_FAIL_START        start fails with "refusing to start"
//   TM_NO_ENTRY          exports no keel_module_entry at all
// start and stop report "start:<name>" and "stop:<name>" through keel_test_event().
#include <cstdio>
#include <string>

#include "keel/module.h"

#define TM_STR2(x) #x
#define TM_STR(x) TM_STR2(x)
#ifndef TM_ABI
#define TM_ABI KEEL_MODULE_ABI_VERSION
#endif

extern "C" void keel_test_event(const char* text);

namespace {

int start(keel::module_context* context, char* error, std::size_t error_bytes) {
  keel_test_event((std::string("start:") + TM_STR(TM_NAME)).c_str());
#ifdef TM_FAIL_START
  std::snprintf(error, error_bytes, "refusing to start");
  return 1;
#else
  return 0;
#endif
}

void stop(keel::module_context*) { keel_test_event((std::string("stop:") + TM_STR(TM_NAME)).c_str()); }

#ifdef TM_DEPENDS
const char* const depends[] = {TM_STR(TM_DEPENDS), nullptr};
#else
const char* const* depends = nullptr;
#endif

const keel_module_descriptor descriptor = {
    TM_ABI, TM_STR(TM_NAME), "0.0.1", R"({"type": "object"})", depends, start, stop,
};

}  // namespace

#ifndef TM_NO_ENTRY
extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* keel_module_entry(void) {
  return &descriptor;
}
#else
// Something exported, so the file is a real shared object with symbols but no entry.
extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* not_the_entry(void) {
  return &descriptor;
}
#endif
