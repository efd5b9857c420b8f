// kv_bus.cc — kv requests over the bus (see kv_bus.h).
#include "kv_bus.h"

#include <flatbuffers/flatbuffers.h>

#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "keel/reactor/shard.h"
#include "keel/wire/frame.h"

namespace keel::discovery_module {
namespace {

namespace native = kv::native;
using wire::frame_type;

constexpr std::string_view kv_module = "kv";
bus* g_bus = nullptr;

// A finished builder as a bus payload. copy_of allocates with new[], so the payload is
// 8-byte aligned as the receiver's verify_payload requires (a builder's own buffer need
// not be).
buffer payload_of(const flatbuffers::FlatBufferBuilder& builder) {
  return buffer::copy_of(builder.GetBufferPointer(), builder.GetSize());
}

// The bytes of `m` at an 8-byte aligned address (copied when they are not).
struct aligned_bytes {
  std::vector<std::uint64_t> storage;
  std::span<const std::uint8_t> bytes;
};
aligned_bytes aligned(const message& m) {
  aligned_bytes out;
  if (reinterpret_cast<std::uintptr_t>(m.payload.data()) % wire::frame_alignment_bytes == 0) {
    out.bytes = {m.payload.data(), m.payload.size()};
  } else {
    out.storage.resize((m.payload.size() + 7) / 8);
    std::memcpy(out.storage.data(), m.payload.data(), m.payload.size());
    out.bytes = {reinterpret_cast<const std::uint8_t*>(out.storage.data()), m.payload.size()};
  }
  return out;
}

// The kv module's refusal (a keel.wire.Error payload) as a status.
status refusal_of(std::span<const std::uint8_t> bytes) {
  status checked = wire::verify_payload(frame_type::error, bytes.data(), bytes.size());
  if (!checked) return checked;
  native::error_payload e = native::decode(*flatbuffers::GetRoot<wire::Error>(bytes.data()));
  auto code = static_cast<errc>(e.code);
  if (code == errc::ok || e.code > static_cast<std::uint16_t>(errc::unavailable)) code = errc::unavailable;
  return status(code, e.message);
}

template <typename Response>
result<Response> decode_answer(const message& m) {
  aligned_bytes payload = aligned(m);
  if (m.flags & message_flags::error) return refusal_of(payload.bytes);
  auto type = static_cast<frame_type>(m.type);
  status checked = wire::verify_payload(type, payload.bytes.data(), payload.bytes.size());
  if (!checked) return checked;
  Response out;
  status decoded = native::decode_payload(type, payload.bytes, out);
  if (!decoded) return decoded;
  return out;
}

template <typename Response>
task<result<Response>> ask(frame_type type, buffer payload) {
  KEEL_ASSERT(g_bus != nullptr);
  task<result<message>> pending =
      g_bus->request(kv_module, static_cast<std::uint16_t>(type), std::move(payload), shard::current()->id());
  result<message> answer = co_await std::move(pending);
  if (!answer) co_return answer.error();
  co_return decode_answer<Response>(answer.value());
}

}  // namespace

void set_bus(bus* b) noexcept { g_bus = b; }

task<result<native::range_response>> kv_range(kv::range_request request) {
  flatbuffers::FlatBufferBuilder builder(256);
  native::encode(builder, request);
  return ask<native::range_response>(frame_type::range_request, payload_of(builder));
}

task<result<native::txn_response>> kv_txn(kv::txn_request request) {
  flatbuffers::FlatBufferBuilder builder(512);
  native::encode(builder, request);
  return ask<native::txn_response>(frame_type::txn_request, payload_of(builder));
}

task<result<native::delete_range_response>> kv_delete_range(kv::delete_range_request request) {
  flatbuffers::FlatBufferBuilder builder(256);
  native::encode(builder, request);
  return ask<native::delete_range_response>(frame_type::delete_range_request, payload_of(builder));
}

result<stream_reader> kv_watch(const native::watch_create_request& request) {
  KEEL_ASSERT(g_bus != nullptr);
  std::uint16_t module = 0;
  if (!g_bus->find_module(kv_module, module)) return status(errc::not_found, "discovery: the kv module is not loaded");
  flatbuffers::FlatBufferBuilder builder(256);
  native::encode(builder, request);
  return g_bus->open_stream(module, static_cast<std::uint16_t>(frame_type::watch_create_request),
                            payload_of(builder), shard::current()->id());
}

result<native::watch_response> decode_watch_message(const message& m) {
  return decode_answer<native::watch_response>(m);
}

}  // namespace keel::discovery_module
