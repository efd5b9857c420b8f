// keel/limits.h — every bound in one place, units in the names.
//
// A queue, buffer, batch, message or connection count without a limit is a bug. Change a
// limit here and the static_asserts below keep the relations between them true.
#pragma once

#include <cstddef>
#include <cstdint>

namespace keel::limits {

// Reactor
inline constexpr unsigned shards_max = 64;
inline constexpr unsigned uring_sq_entries = 1024;
inline constexpr unsigned uring_cq_entries = 4 * uring_sq_entries;
inline constexpr unsigned recv_buffer_bytes = 16 * 1024;       // one provided buffer
inline constexpr unsigned recv_buffer_count = 1024;            // per shard, power of two
inline constexpr unsigned cross_shard_queue_items = 4096;      // per ordered pair, power of two
inline constexpr unsigned cross_shard_batch_items = 16;        // published together
inline constexpr unsigned task_quota_microseconds = 500;       // then the shard polls I/O
inline constexpr std::size_t connection_send_buffer_bytes_max = 4 * 1024 * 1024;
inline constexpr unsigned connections_per_shard_max = 65536;
inline constexpr unsigned listen_backlog = 4096;

// HTTP
inline constexpr std::size_t http_header_bytes_max = 64 * 1024;
inline constexpr std::size_t http_body_bytes_max = 1536 * 1024;  // etcd's 1.5 MiB

// Wire
inline constexpr unsigned native_requests_in_flight_max = 1024;   // per connection; then reading stops
inline constexpr std::uint32_t frame_bytes_max = 4 * 1024 * 1024;
inline constexpr unsigned flatbuffers_depth_max = 64;
inline constexpr unsigned flatbuffers_tables_max = 1000000;

// Bus
inline constexpr unsigned modules_max = 32;
inline constexpr unsigned bus_pending_requests_max = 65536;    // per shard
inline constexpr unsigned bus_stream_items_max = 4096;          // undelivered, per stream

// WAL (docs/formats/wal.md)
inline constexpr std::uint64_t wal_segment_bytes_max = 64 * 1024 * 1024;  // preallocated
inline constexpr std::uint32_t wal_batch_bytes_max = 8 * 1024 * 1024;     // one write+fdatasync
inline constexpr std::uint32_t wal_entry_data_bytes_max = frame_bytes_max;
// header 16 + term and index 16 + data + padding up to 7, rounded to 8
inline constexpr std::uint32_t wal_record_bytes_max = wal_entry_data_bytes_max + 40;
inline constexpr std::size_t wal_pending_bytes_max = 64 * 1024 * 1024;    // appended, not yet written

// Watches (modules/kv): undelivered events one watcher may hold before it drops them and
// catches up from the store's history; events read from history per catch-up step.
inline constexpr std::size_t watch_pending_events_max = 1024;
inline constexpr std::size_t watch_history_events_per_step = 1000;

static_assert((recv_buffer_count & (recv_buffer_count - 1)) == 0);
static_assert((cross_shard_queue_items & (cross_shard_queue_items - 1)) == 0);
static_assert(cross_shard_batch_items < cross_shard_queue_items);
static_assert(uring_cq_entries >= 4 * uring_sq_entries);
static_assert(http_body_bytes_max < frame_bytes_max);
static_assert(wal_record_bytes_max % 8 == 0);
static_assert(wal_record_bytes_max <= wal_batch_bytes_max);
static_assert(wal_batch_bytes_max <= (1u << 30));  // one io_uring write
static_assert(wal_segment_bytes_max >= 2ull * wal_batch_bytes_max);
static_assert(wal_pending_bytes_max >= wal_batch_bytes_max);

}  // namespace keel::limits
