# fuzz_mvcc: arbitrary bytes through mvcc_store::load, the MVCC snapshot decoder
# (tests/fuzz/mvcc_fuzz.cc). As with fuzz_wal, the store's sources are compiled into the
# fuzzer so that libFuzzer's instrumentation sees them; absl's btree is header-only, its
# hash maps (snapshot_encoding.cc) need absl's hash library.
find_package(absl REQUIRED)
keel_add_fuzzer(fuzz_mvcc
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/mvcc_fuzz.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/mvcc/src/snapshot_encoding.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/mvcc/src/invariants.cc
    ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/mvcc/src/store.cc
  LIBS keel_base absl::btree absl::flat_hash_map absl::flat_hash_set)
target_include_directories(fuzz_mvcc PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../../modules/kv/mvcc/include)
