# fuzz_frame: arbitrary bytes, in arbitrary chunkings, through frame_decoder and
# verify-on-receive (tests/fuzz/wire_fuzz.cc). The wire sources are compiled into the
# fuzzer a second time so that libFuzzer's coverage instrumentation sees the decoder and
# the verifier; keel_wire itself stays uninstrumented so other targets of a fuzz build
# still link without the fuzzer runtime. The objects given here win over the archive's.
keel_add_fuzzer(fuzz_frame
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/wire_fuzz.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../wire/src/crc32c.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../wire/src/frame.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../wire/src/verify.cc
  LIBS keel_wire)
