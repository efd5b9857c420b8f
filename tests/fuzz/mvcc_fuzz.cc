// fuzz_mvcc — mvcc_store::load (the MVCC snapshot decoder) against arbitrary bytes.
//
// load must return a store or a corruption status naming a byte offset, never crash or
// read outside the input (ASan). A store it returns must pass check_invariants, save back
// to exactly the input (the encoding is canonical), and take further writes and reads
// without tripping an assertion. Seeds: tests/fuzz/corpus/mvcc/ (make-mvcc-seeds.py).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "keel/kv/mvcc.h"

using namespace keel;
using namespace keel::kv;

namespace {

void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_mvcc: %s\n", what);
    std::abort();
  }
}

// Writes and reads that touch every part of a loaded store.
void exercise(mvcc_store& store) {
  std::int64_t current = store.current_revision();
  range_request everything;
  everything.key = std::string(1, '\0');
  everything.range_end = std::string(1, '\0');
  for (std::int64_t rev = store.compact_revision(); rev <= current; ++rev) {
    everything.revision = rev;
    (void)store.range(everything);
  }
  auto events =
      store.events_since(store.compact_revision() + 1, everything.key, everything.range_end, 0);
  require(events.is_ok(), "events_since after the compact revision failed");
  put_request put;
  put.key = "fuzz";
  put.value = "v";
  auto written = store.put(put);
  require(written.is_ok() && written->revision == current + 1, "put on a loaded store");
  txn_request txn;
  compare c;
  c.key = everything.key;
  c.range_end = everything.range_end;
  c.target = compare_target::version;
  c.result = compare_result::greater;
  txn.compares.push_back(c);
  txn.success.push_back(request_op::of(put));
  delete_range_request removal;
  removal.key = everything.key;
  removal.range_end = everything.range_end;
  txn.failure.push_back(request_op::of(removal));
  require(store.txn(txn).is_ok(), "txn on a loaded store");
  require(store.delete_range(removal).is_ok(), "delete on a loaded store");
  require(store.compact(store.current_revision()).is_ok(), "compact on a loaded store");
  require(store.check_invariants().is_ok(), "invariants after writes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto loaded = mvcc_store::load(bytes);
  if (!loaded.is_ok()) {
    require(loaded.error().code() == errc::corruption, "a failure that is not corruption");
    require(loaded.error().message().rfind("mvcc snapshot: byte ", 0) == 0, "no byte offset");
    return 0;
  }
  require(loaded->check_invariants().is_ok(), "a loaded store breaks an invariant");
  std::string again;
  loaded->save(again);
  require(again == bytes, "save(load(bytes)) != bytes");
  exercise(*loaded);
  return 0;
}
