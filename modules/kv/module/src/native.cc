// native.cc — the kv operations as native FlatBuffers frames (kv.fbs), served through the
// bus: keeld's native server (cmd/keeld/native.cc) hands each verified request frame to
// the handler registered for its type, on the connection's shard, and writes back what the
// handler answers under the request's id. See ../README.md "native".
//
// Requests are decoded and responses encoded by the codec the client shares
// (keel/kv/native_codec.h), so both ends agree by construction. Each handler decodes, runs
// one engine operation (core.h: it hops to the owner shard and answers after the
// fdatasync), and encodes the answer with a header of ids() and the result's revision.
//
// Errors are keel.wire.Error payloads built here (not by the host) so that they carry
// etcd's gRPC code (grpc_code_of) next to etcd's message; the host sends them as the error
// frame unchanged (message_flags::error).
//
// Watches are streams: WatchCreate (120) opens one, answered by WatchResponse (121) frames
// under the request's id, the first with created = true and the last with end_of_stream.
// Watch ids are per shard (a connection lives on one shard, so per connection they are
// unique too); WatchCancel (122) finds the watch by id on the shard it arrives on.
#include <flatbuffers/flatbuffers.h>

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "core.h"
#include "keel/kv/native_codec.h"
#include "keel/limits.h"
#include "keel/reactor/bus.h"
#include "keel/wire/frame.h"

namespace keel::kv_module {
namespace {

namespace fb = flatbuffers;
namespace native = kv::native;
using wire::frame_type;

constexpr std::string_view module_name = "kv";
// etcd's progress-notify interval (v3rpc/watch.go), for watches that asked for them.
constexpr auto progress_interval = std::chrono::minutes(10);
// How often a quiet watch looks whether it was cancelled or its connection went away.
constexpr auto liveness_interval = std::chrono::milliseconds(1000);
// The events of one WatchResponse, in (estimated) bytes: well inside a frame.
constexpr std::size_t watch_response_bytes_max = wire::frame_payload_bytes_max / 2;
constexpr std::size_t response_builder_bytes = 256;

// ---- answers ------------------------------------------------------------------------------

native::response_header header_at(std::int64_t revision) {
  const identity& me = ids();
  return {me.cluster_id, me.member_id, revision, me.raft_term};
}

std::unique_ptr<fb::FlatBufferBuilder> new_builder() {
  return std::make_unique<fb::FlatBufferBuilder>(response_builder_bytes);
}

// The finished builder becomes the message's buffer (no copy).
buffer buffer_of(std::unique_ptr<fb::FlatBufferBuilder> builder) {
  auto* owner = builder.release();
  return buffer(owner, [](void* p) { delete static_cast<fb::FlatBufferBuilder*>(p); }, owner->GetBufferPointer(),
                owner->GetSize());
}

message answer(frame_type type, std::unique_ptr<fb::FlatBufferBuilder> builder) {
  message m;
  m.type = static_cast<std::uint16_t>(type);
  m.flags = message_flags::end_of_stream;
  m.payload = buffer_of(std::move(builder));
  return m;
}

// etcd's gRPC status text: the store's own messages ("mvcc: ...") reach etcd clients
// behind "etcdserver: " (rpctypes.ErrGRPCCompacted and friends).
std::string etcd_message(std::string_view text) {
  if (text.starts_with("mvcc: ")) return "etcdserver: " + std::string(text);
  return std::string(text);
}

message error_answer(frame_type response, const status& failure) {
  auto builder = new_builder();
  int grpc = grpc_code_of(failure);
  native::encode_error(*builder, failure.code(), static_cast<std::uint16_t>(grpc == 0 ? 13 : grpc),
                       etcd_message(failure.message()));
  message m = answer(response, std::move(builder));
  m.flags |= message_flags::error;
  return m;
}

// Verify-on-receive: keeld's frame decoder has verified the payload, but a bus message
// may come from anywhere in the process; the Verifier is cheap next to the operation.
template <typename Table>
const Table* verified(const message& request, frame_type type, status& failure) {
  status checked = wire::verify_payload(type, request.payload.data(), request.payload.size());
  if (!checked) {
    failure = status(checked.code(), "etcdserver: bad request: " + checked.message());
    return nullptr;
  }
  return fb::GetRoot<Table>(request.payload.data());
}

// ---- kv -----------------------------------------------------------------------------------

task<result<message>> handle_range(message request) {
  constexpr frame_type response = frame_type::range_response;
  status bad;
  const auto* table = verified<wire::RangeRequest>(request, frame_type::range_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  auto decoded = native::decode(*table);
  if (!decoded) co_return error_answer(response, decoded.error());
  task<result<kv::range_result>> asking = range(std::move(decoded).value(), table->serializable());
  auto got = co_await std::move(asking);
  if (!got) co_return error_answer(response, got.error());
  auto builder = new_builder();
  native::encode_range_response(*builder, header_at(got->revision), got.value());
  co_return answer(response, std::move(builder));
}

task<result<message>> handle_put(message request) {
  constexpr frame_type response = frame_type::put_response;
  status bad;
  const auto* table = verified<wire::PutRequest>(request, frame_type::put_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  task<result<kv::put_result>> writing = put(native::decode(*table));
  auto done = co_await std::move(writing);
  if (!done) co_return error_answer(response, done.error());
  auto builder = new_builder();
  native::encode_put_response(*builder, header_at(done->revision), done.value());
  co_return answer(response, std::move(builder));
}

task<result<message>> handle_delete_range(message request) {
  constexpr frame_type response = frame_type::delete_range_response;
  status bad;
  const auto* table = verified<wire::DeleteRangeRequest>(request, frame_type::delete_range_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  task<result<kv::delete_range_result>> deleting = delete_range(native::decode(*table));
  auto done = co_await std::move(deleting);
  if (!done) co_return error_answer(response, done.error());
  auto builder = new_builder();
  native::encode_delete_range_response(*builder, header_at(done->revision), done.value());
  co_return answer(response, std::move(builder));
}

task<result<message>> handle_txn(message request) {
  constexpr frame_type response = frame_type::txn_response;
  status bad;
  const auto* table = verified<wire::TxnRequest>(request, frame_type::txn_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  auto decoded = native::decode(*table);
  if (!decoded) co_return error_answer(response, decoded.error());
  task<result<kv::txn_result>> running = txn(std::move(decoded).value());
  auto done = co_await std::move(running);
  if (!done) co_return error_answer(response, done.error());
  auto builder = new_builder();
  native::encode_txn_response(*builder, header_at(done->revision), done.value());
  co_return answer(response, std::move(builder));
}

task<result<message>> handle_compaction(message request) {
  constexpr frame_type response = frame_type::compaction_response;
  status bad;
  const auto* table = verified<wire::CompactionRequest>(request, frame_type::compaction_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  task<result<std::int64_t>> compacting = compact(table->revision(), table->physical());
  auto done = co_await std::move(compacting);
  if (!done) co_return error_answer(response, done.error());
  auto builder = new_builder();
  native::encode_compaction_response(*builder, header_at(done.value()));
  co_return answer(response, std::move(builder));
}

// ---- leases -------------------------------------------------------------------------------

task<result<message>> handle_lease_grant(message request) {
  constexpr frame_type response = frame_type::lease_grant_response;
  status bad;
  const auto* table = verified<wire::LeaseGrantRequest>(request, frame_type::lease_grant_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  task<result<lease_status>> granting = lease_grant(table->ttl(), table->id());
  auto done = co_await std::move(granting);
  if (!done) co_return error_answer(response, done.error());
  auto builder = new_builder();
  std::int64_t ttl = done->granted_ttl > 0 ? done->granted_ttl : done->ttl;  // etcd answers the granted TTL
  native::encode_lease_grant_response(*builder, header_at(done->revision), done->id, ttl);
  co_return answer(response, std::move(builder));
}

task<result<message>> handle_lease_revoke(message request) {
  constexpr frame_type response = frame_type::lease_revoke_response;
  status bad;
  const auto* table = verified<wire::LeaseRevokeRequest>(request, frame_type::lease_revoke_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  task<result<std::int64_t>> revoking = lease_revoke(table->id());
  auto done = co_await std::move(revoking);
  if (!done) co_return error_answer(response, done.error());
  auto builder = new_builder();
  native::encode_lease_revoke_response(*builder, header_at(done.value()));
  co_return answer(response, std::move(builder));
}

// An unknown or expired lease is not an error here: TTL 0 (etcd's LeaseKeepAlive stream).
task<result<message>> handle_lease_keep_alive(message request) {
  constexpr frame_type response = frame_type::lease_keepalive_response;
  status bad;
  const auto* table = verified<wire::LeaseKeepAliveRequest>(request, frame_type::lease_keepalive_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  std::int64_t id = table->id();
  task<result<lease_status>> renewing = lease_keep_alive(id);
  auto done = co_await std::move(renewing);
  auto builder = new_builder();
  if (!done) {
    if (kv_error_of(done.error()) != kv_error::lease_not_found) co_return error_answer(response, done.error());
    native::encode_lease_keep_alive_response(*builder, header_at(published_revision()), id, 0);
  } else {
    native::encode_lease_keep_alive_response(*builder, header_at(done->revision), id, done->ttl);
  }
  co_return answer(response, std::move(builder));
}

// An unknown or expired lease: TTL -1 (etcd 3.4's LeaseTimeToLive).
task<result<message>> handle_lease_time_to_live(message request) {
  constexpr frame_type response = frame_type::lease_time_to_live_response;
  status bad;
  const auto* table = verified<wire::LeaseTimeToLiveRequest>(request, frame_type::lease_time_to_live_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  std::int64_t id = table->id();
  task<result<lease_status>> asking = lease_time_to_live(id, table->keys());
  auto done = co_await std::move(asking);
  auto builder = new_builder();
  if (!done) {
    if (kv_error_of(done.error()) != kv_error::lease_not_found) co_return error_answer(response, done.error());
    native::encode_lease_time_to_live_response(*builder, header_at(published_revision()), id, -1, 0, {});
  } else {
    const lease_status& l = done.value();
    native::encode_lease_time_to_live_response(*builder, header_at(l.revision), id, l.ttl, l.granted_ttl, l.keys);
  }
  co_return answer(response, std::move(builder));
}

task<result<message>> handle_lease_leases(message request) {
  constexpr frame_type response = frame_type::lease_leases_response;
  status bad;
  if (verified<wire::LeaseLeasesRequest>(request, frame_type::lease_leases_request, bad) == nullptr)
    co_return error_answer(response, bad);
  task<result<std::vector<std::int64_t>>> listing = lease_list();
  auto done = co_await std::move(listing);
  if (!done) co_return error_answer(response, done.error());
  auto builder = new_builder();
  native::encode_lease_leases_response(*builder, header_at(published_revision()), done.value());
  co_return answer(response, std::move(builder));
}

// ---- watches ------------------------------------------------------------------------------

// One open watch stream, living in its serve_watch() frame. Touched on its shard only.
struct native_watch {
  std::int64_t id = 0;
  stream_writer* writer = nullptr;
  bool cancelled = false;  // WatchCancel sent the stream's last frame already
};

// The watches of one shard, by id. Owned by that shard (index = shard id).
struct shard_watches {
  std::unordered_map<std::int64_t, native_watch*> by_id;
  std::int64_t next_id = 0;  // etcd numbers a stream's watches from 0
};
std::array<shard_watches, limits::shards_max> g_watches;

shard_watches& watches_here() { return g_watches[shard::current()->id()]; }

// etcd's messages (mvcc/watcher.go, etcdserver/api/v3rpc).
constexpr std::string_view duplicate_watch_id = "mvcc: duplicate watch ID provided on the WatchStream";
constexpr std::string_view watcher_not_found = "mvcc: watcher does not exist";

buffer watch_payload(std::int64_t revision, const native::watch_status& state,
                     std::span<const kv::event* const> events, bool prev_kv) {
  auto builder = new_builder();
  native::encode_watch_response(*builder, header_at(revision), state, events, prev_kv);
  return buffer_of(std::move(builder));
}

bool send_watch(stream_writer& writer, std::int64_t revision, const native::watch_status& state,
                std::span<const kv::event* const> events, bool prev_kv, bool last) {
  return writer.send(static_cast<std::uint16_t>(frame_type::watch_response),
                     watch_payload(revision, state, events, prev_kv), last);
}

// Events in WatchResponses of at most watch_response_bytes_max each (a frame has a limit).
bool send_events(stream_writer& writer, std::int64_t watch_id, const watch_update& update, bool prev_kv) {
  native::watch_status state;
  state.watch_id = watch_id;
  std::span<const kv::event* const> all(update.events);
  std::size_t begin = 0;
  while (begin < all.size()) {
    std::size_t end = begin;
    std::size_t bytes = 0;
    while (end < all.size() && (end == begin || bytes + native::encoded_event_bytes(*all[end], prev_kv) <=
                                                    watch_response_bytes_max)) {
      bytes += native::encoded_event_bytes(*all[end], prev_kv);
      ++end;
    }
    if (!send_watch(writer, update.revision, state, all.subspan(begin, end - begin), prev_kv, false)) return false;
    begin = end;
  }
  return true;
}

// A watch refused at creation: one response, created and canceled (etcd's way), which ends
// the stream.
void refuse_watch(stream_writer& writer, std::int64_t watch_id, std::string_view reason) {
  native::watch_status state;
  state.watch_id = watch_id;
  state.created = true;
  state.canceled = true;
  state.cancel_reason = std::string(reason);
  send_watch(writer, published_revision(), state, {}, false, true);
}

// Picks the watch's id: the client's if it gave one (refused if taken), else the next free.
std::optional<std::int64_t> assign_watch_id(shard_watches& here, std::int64_t wanted) {
  if (wanted != 0) {
    if (here.by_id.contains(wanted)) return std::nullopt;
    return wanted;
  }
  while (here.by_id.contains(here.next_id)) ++here.next_id;
  return here.next_id++;
}

watch_request engine_request(const native::watch_create_request& create) {
  watch_request w;
  // "" with a range end means "from the smallest key"; the engine wants a key, and no key
  // is smaller than "\0" but "" (which cannot exist).
  w.key = create.key.empty() ? std::string(1, '\0') : create.key;
  w.range_end = create.range_end;
  w.start_revision = create.start_revision;
  w.prev_kv = create.prev_kv;
  w.no_put = create.no_put;
  w.no_delete = create.no_delete;
  return w;
}

// The life of one watch stream. Ends when: the watch is cancelled (WatchCancel sent the
// last frame), the watcher is canceled by the engine (compaction; the last frame says
// so), or the reader is gone (connection closed: keeld cancels the stream's reader) or
// overrun — each checked at least every liveness_interval.
task<void> serve_watch(message request, stream_writer writer) {
  status bad;
  const auto* table = verified<wire::WatchCreateRequest>(request, frame_type::watch_create_request, bad);
  if (table == nullptr) {
    refuse_watch(writer, 0, bad.message());
    co_return;
  }
  auto decoded = native::decode(*table);
  if (!decoded) {
    refuse_watch(writer, table->watch_id(), decoded.error().message());
    co_return;
  }
  const native::watch_create_request& create = decoded.value();
  task<bool> asking = self_is_learner();
  if (co_await std::move(asking)) {
    refuse_watch(writer, create.watch_id, kv_messages::not_supported_for_learner);
    co_return;
  }
  if (create.key.empty() && create.range_end.empty()) {
    refuse_watch(writer, create.watch_id, kv::mvcc_messages::empty_key);
    co_return;
  }
  shard_watches& here = watches_here();
  auto id = assign_watch_id(here, create.watch_id);
  if (!id) {
    refuse_watch(writer, create.watch_id, duplicate_watch_id);
    co_return;
  }
  native_watch self{*id, &writer};
  here.by_id[self.id] = &self;
  std::unique_ptr<watcher> w = watcher::create(engine_request(create));

  native::watch_status state;
  state.watch_id = self.id;
  state.created = true;
  bool open = send_watch(writer, published_revision(), state, {}, false, false);
  auto last_sent = std::chrono::steady_clock::now();
  while (open && !self.cancelled && writer.open()) {
    task<std::optional<watch_update>> waiting = w->next(liveness_interval);
    std::optional<watch_update> update = co_await std::move(waiting);
    if (self.cancelled || !writer.open()) break;
    auto now = std::chrono::steady_clock::now();
    if (!update) {
      if (create.progress_notify && now - last_sent >= progress_interval) {
        native::watch_status progress;
        progress.watch_id = self.id;
        open = send_watch(writer, published_revision(), progress, {}, false, false);
        last_sent = now;
      }
      continue;
    }
    if (update->canceled) {
      native::watch_status ended;
      ended.watch_id = self.id;
      ended.canceled = true;
      ended.compact_revision = update->compact_revision;
      ended.cancel_reason = etcd_message(update->cancel_reason);
      send_watch(writer, update->revision, ended, {}, false, true);
      break;
    }
    open = send_events(writer, self.id, *update, create.prev_kv);
    last_sent = now;
  }
  auto mine = here.by_id.find(self.id);
  if (mine != here.by_id.end() && mine->second == &self) here.by_id.erase(mine);
}

task<result<message>> handle_watch_cancel(message request) {
  constexpr frame_type response = frame_type::watch_cancel_response;
  status bad;
  const auto* table = verified<wire::WatchCancelRequest>(request, frame_type::watch_cancel_request, bad);
  if (table == nullptr) co_return error_answer(response, bad);
  shard_watches& here = watches_here();
  auto found = here.by_id.find(table->watch_id());
  if (found == here.by_id.end()) co_return error_answer(response, status(errc::not_found, std::string(watcher_not_found)));
  native_watch& w = *found->second;
  here.by_id.erase(found);
  w.cancelled = true;
  // The stream's last frame, as etcd answers a cancel: canceled, no events. The watch's
  // coroutine notices `cancelled` when it next wakes and frees its watcher.
  native::watch_status ended;
  ended.watch_id = w.id;
  ended.canceled = true;
  send_watch(*w.writer, published_revision(), ended, {}, false, true);
  auto builder = new_builder();
  native::encode_watch_cancel_response(*builder, header_at(published_revision()));
  co_return answer(response, std::move(builder));
}

void handle(bus& b, frame_type type, task<result<message>> (*handler)(message)) {
  b.handle(module_name, static_cast<std::uint16_t>(type), handler);
}

}  // namespace

void register_native_handlers(bus& b) {
  handle(b, frame_type::range_request, handle_range);
  handle(b, frame_type::put_request, handle_put);
  handle(b, frame_type::delete_range_request, handle_delete_range);
  handle(b, frame_type::txn_request, handle_txn);
  handle(b, frame_type::compaction_request, handle_compaction);
  handle(b, frame_type::lease_grant_request, handle_lease_grant);
  handle(b, frame_type::lease_revoke_request, handle_lease_revoke);
  handle(b, frame_type::lease_keepalive_request, handle_lease_keep_alive);
  handle(b, frame_type::lease_time_to_live_request, handle_lease_time_to_live);
  handle(b, frame_type::lease_leases_request, handle_lease_leases);
  handle(b, frame_type::watch_cancel_request, handle_watch_cancel);
  b.handle_stream(module_name, static_cast<std::uint16_t>(frame_type::watch_create_request), serve_watch);
}

}  // namespace keel::kv_module
