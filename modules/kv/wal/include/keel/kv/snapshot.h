// keel/kv/snapshot.h — snapshot files: the state machine's state after a log index.
//
// The format, the directory layout and how recovery combines a snapshot with the WAL are
// written down in docs/formats/snapshot.md; read it first. The payload is opaque here (the
// kv module puts the MVCC store's encoding and its leases there).
//
// Threads: the file functions make blocking POSIX calls (open, write, fdatasync, rename,
// directory fsync) and are meant for a helper thread or start-up, never a shard's
// reactor loop. They share no state, so distinct directories may be used concurrently;
// one directory is written by one caller at a time. The codec functions are pure.
//
// Errors: errc::io_error names the call, the path and errno's text ("write
// /data/snap/0000000000000002-0000000000000010.snap.tmp: No space left on device");
// errc::corruption names the file and what failed its check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/status.h"

namespace keel::kv {

inline constexpr std::uint32_t snapshot_magic = 0x504E534B;  // "KSNP" in file order
inline constexpr std::uint16_t snapshot_version = 1;
// magic, version, reserved, term, index, payload_bytes.
inline constexpr std::size_t snapshot_header_bytes = 32;
// The CRC-32C after the payload.
inline constexpr std::size_t snapshot_trailer_bytes = 4;
// etcd's --max-snapshots default. (Belongs in keel/limits.h once the lead moves it there.)
inline constexpr std::size_t snapshots_kept_default = 5;
inline constexpr std::string_view snapshot_suffix = ".snap";
inline constexpr std::string_view snapshot_temporary_suffix = ".snap.tmp";
inline constexpr std::string_view snapshot_broken_suffix = ".snap.broken";

// "%016x-%016x.snap": the term and index of the last log entry the snapshot covers.
std::string snapshot_name(std::uint64_t term, std::uint64_t index);
// {term, index} of a snapshot name; nullopt for any other name (".snap.tmp" too).
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_snapshot_name(std::string_view name);

// A snapshot that verified.
struct loaded_snapshot {
  std::uint64_t term = 0;
  std::uint64_t index = 0;
  std::string payload;
  std::string file;  // the path it was read from
};

// ---- codec (pure) -------------------------------------------------------------------

// The whole file: header, payload, CRC. (write_snapshot writes the same bytes without
// copying the payload.)
std::string encode_snapshot(std::uint64_t term, std::uint64_t index, std::string_view payload);

// Checks a whole file's bytes (docs/formats/snapshot.md, "File content") and, if they
// verify, moves the payload out of them. `file` is the path named in messages; its last
// component must be the snapshot's name (term and index must agree with it). Errors:
// errc::corruption "FILE: what failed" for a short file, a CRC mismatch, a bad magic,
// version, reserved field or length, or a header that disagrees with the name. Never
// reads outside `bytes` (any input).
result<loaded_snapshot> decode_snapshot(std::string bytes, const std::string& file);

// ---- files (blocking POSIX) ---------------------------------------------------------

// Writes `payload` as the snapshot (term, index) in `snap_dir`, durably: `<name>.tmp`,
// written, fdatasynced, renamed to `<name>`, directory fsynced. Creates `snap_dir` (and
// fsyncs its parent) if it is missing. A file with the same name is replaced atomically.
// Errors: errc::io_error naming the failed call, the path and errno's text; the `.tmp` is
// removed (best effort) and no final file is created — ENOSPC reads "… No space left on
// device". (Only when the last step, the directory fsync, fails is the file already in
// place, its name not known to be durable.) On any error the caller must not release the
// WAL the snapshot was meant to cover.
status write_snapshot(const std::string& snap_dir, std::uint64_t term, std::uint64_t index,
                      std::string_view payload);

// The newest snapshot in `snap_dir` that verifies, or nullopt when there is none (or no
// directory). First removes every `*.snap.tmp` (a write that never finished). A newer
// file that does not verify is skipped: a warning naming the file and why is appended to
// `*warnings` (if not null) and the file is renamed to `<name>.snap.broken`, so it is
// never read again; the next older one is tried. Errors: errc::io_error when the
// directory cannot be listed or synced, a file cannot be read, removed or renamed (a
// disk problem does not make keel fall back silently).
result<std::optional<loaded_snapshot>> load_newest_snapshot(const std::string& snap_dir,
                                                            std::vector<std::string>* warnings);

// The snapshot files of `snap_dir` (names only, not read), newest first: by index, then
// term. A missing directory has none. Changes nothing (keelctl uses it).
// Errors: errc::io_error when the directory cannot be listed.
result<std::vector<std::string>> list_snapshots(const std::string& snap_dir);

// Reads and checks one snapshot file (`snap_dir`/`name`); changes nothing.
// Errors: errc::io_error when it cannot be read, errc::corruption as decode_snapshot.
result<loaded_snapshot> read_snapshot(const std::string& snap_dir, const std::string& name);

// Keeps the newest `keep` snapshot files (by name, as list_snapshots orders them; the
// files are not read) and removes the others, then fsyncs the directory if it removed
// any. `.tmp` and `.broken` files are left alone. REQUIRES: keep >= 1.
// Errors: errc::io_error naming the file that could not be removed.
status remove_old_snapshots(const std::string& snap_dir, std::size_t keep);

struct wal_recovery;

// Whether the WAL recovered from `wal_dir` joins the newest snapshot, at entry
// `snapshot_index` (0: none), as docs/formats/snapshot.md ("Recovery: snapshot plus WAL",
// step 3) requires. Always: the WAL's first entry is at most one past the snapshot. When
// `from_own_log` (a single node, whose snapshots are taken from entries already durable
// in this log): the WAL's segments also reach the snapshot's entry, else segments after
// their end were lost, and the WAL's entry at `snapshot_index` has `snapshot_term`. A
// WAL without segments joins any snapshot: a data dir restored from a snapshot file
// alone. Errors: errc::corruption saying which entries are missing or differ.
status check_wal_joins_snapshot(const wal_recovery& wal, std::uint64_t snapshot_index, std::uint64_t snapshot_term,
                                const std::string& wal_dir, bool from_own_log);

}  // namespace keel::kv
