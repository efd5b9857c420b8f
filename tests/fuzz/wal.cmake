# fuzz_wal: arbitrary bytes as one segment file through the WAL's recovery decoder
# (tests/fuzz/wal_fuzz.cc). As with fuzz_frame, the decoder's sources are compiled into
# the fuzzer so that libFuzzer's instrumentation sees them.
keel_add_fuzzer(fuzz_wal
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/wal_fuzz.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/wal/src/format.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../wire/src/crc32c.cc
  LIBS keel_wal_format)
