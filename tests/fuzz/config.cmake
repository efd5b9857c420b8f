# fuzz_config: keel.json content (and a few flags) through loader::finish().
keel_add_fuzzer(fuzz_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/config_fuzz.cc LIBS keel_config)
# libFuzzer needs coverage from the code under test, not only from the harness.
# -fno-sanitize=pointer-overflow: see config/CMakeLists.txt (a rapidjson 1.1 bug).
# One SHELL: group so that CMake's option de-duplication keeps the order.
target_compile_options(keel_config PRIVATE
  "SHELL:-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=pointer-overflow")
