// kv_bus.h — the discovery module's only way to the keyspace: the kv module's native
// FlatBuffers messages (wire/schemas/kv.fbs) over the host bus, addressed to the module
// "kv" on the calling shard (kv's handlers hop to the owner shard themselves).
//
// Requests are encoded and answers decoded by the kv client library's codec
// (keel/kv/native_codec.h), the one the kv module uses, so both ends agree by
// construction. Every answer is run through the FlatBuffers Verifier before it is read.
//
// REQUIRES: every function runs on a shard thread, after the kv module registered its
// handlers (the descriptor declares "kv" as a dependency).
// Errors: the bus's own (errc::not_found when kv is not loaded), or the kv module's
// refusal as its errc and etcd's message (a WAL failure is errc::unavailable).
#pragma once

#include <cstdint>

#include "keel/kv/native_codec.h"
#include "keel/reactor/bus.h"
#include "keel/reactor/task.h"
#include "keel/status.h"

namespace keel::discovery_module {

void set_bus(bus* b) noexcept;

task<result<kv::native::range_response>> kv_range(kv::range_request request);
task<result<kv::native::txn_response>> kv_txn(kv::txn_request request);
task<result<kv::native::delete_range_response>> kv_delete_range(kv::delete_range_request request);

// Opens a kv watch stream (WatchCreate, answered by WatchResponse messages).
result<stream_reader> kv_watch(const kv::native::watch_create_request& request);
// Decodes one message of a watch stream (verified first).
result<kv::native::watch_response> decode_watch_message(const message& m);

}  // namespace keel::discovery_module
