# fuzz_native: arbitrary bytes as one kv payload (types 100-123, or an error payload)
# through verify-on-receive and then the native codec's decoders, the server's and the
# client's (tests/fuzz/native_fuzz.cc). As with fuzz_frame, the codec and the verifier
# are compiled into the fuzzer so that libFuzzer's instrumentation sees them; keel_wire
# brings the generated kv.fbs headers and the rest of the frame code.
keel_add_fuzzer(fuzz_native
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/native_fuzz.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/client/src/native_codec.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../wire/src/verify.cc
  LIBS keel_wire keel_base)
# keel/kv/native_codec.h, and keel/kv/mvcc.h for the store's value types (header-only here).
target_include_directories(fuzz_native PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/client/include
  ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/mvcc/include)
