// cluster.cc — the kv engine's Raft group on the owner shard: member.json, the log in the
// WAL, the ready loop, the peer port, forwarded writes and ReadIndex reads. See cluster.h.
#include "cluster.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <csignal>
#include <unistd.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "core_internal.h"
#include "le_bytes.h"
#include "v2.h"
#include "keel/cluster.h"
#include "keel/kv/snapshot.h"
#include "keel/limits.h"
#include "keel/module.h"
#include "keel/raft/raft.h"
#include "keel/raft/wire.h"
#include "keel/reactor/http.h"
#include "keel/reactor/io.h"
#include "keel/reactor/net.h"
#include "keel/version.h"
#include "keel/wire/frame.h"

namespace keel::kv_module {

namespace {

using std::chrono::milliseconds;

// A client request waits at most this long for its entry (etcd: 5 s plus two election
// timeouts; keel keeps the same order).
milliseconds request_timeout(unsigned election_ms) { return milliseconds(5000 + 2 * election_ms); }

// One thing a coroutine waits for, with a timeout: fire() wakes it.
struct wait_slot {
  keel::timer timer;
  bool fired = false;
  status outcome;
  void fire(status s) {
    if (fired) return;
    fired = true;
    outcome = std::move(s);
    timer.cancel();
  }
};

// true when fired, false when the time ran out.
task<bool> wait_for(wait_slot& slot, milliseconds timeout) {
  if (slot.fired) co_return true;
  task<bool> sleeping = slot.timer.sleep(timeout);
  (void)co_await std::move(sleeping);
  co_return slot.fired;
}

task<void> pause(milliseconds delay) {
  keel::timer t;
  task<bool> sleeping = t.sleep(delay);
  (void)co_await std::move(sleeping);
}

struct forward_waiter {
  wait_slot slot;
  apply_outcome outcome;
  std::int64_t ttl = 0;
  std::uint64_t index = 0;     // a membership change: the conf change's index and term
  std::uint64_t term = 0;
  std::string answer;          // a relayed v2 write: the leader's answer (v2.h)
  // Answered by the leader's result (a membership change, a relayed v2 write), not by the
  // apply of an entry wrapped with this request's id.
  bool wants_index = false;
};

struct commit_waiter {
  wait_slot slot;
  // The waiter checks for itself that the entry it waited for is the one it wants
  // (holds_entry: a relayed v2 write, a membership change), so an installed snapshot
  // releases it instead of failing it.
  bool checks_entry = false;
};

struct read_waiter {
  wait_slot slot;
};

struct peer_link {
  std::uint64_t id = 0;
  bool retired = false;  // the member was removed: the link is no longer used
  std::string name;
  endpoint where;
  connection* conn = nullptr;
  bool connecting = false;
  clock::time_point next_attempt{};
  std::uint64_t dropped = 0;
};

}  // namespace

// A ready whose persist is in flight (the ready loop holds up to two: the raft core's
// max_outstanding_readies). Once its data is durable, and every older one's, its
// messages_after_persist go out and the raft core is advanced past it.
struct persisting_ready {
  std::vector<raft::message> after_persist;
  std::vector<raft::read_state> read_states;
  bool durable = false;
};

// Readies in flight at once on a member (raft::config::max_outstanding_readies): with 2,
// ready N+1's entries go to the followers and to the WAL while N's fdatasync runs. 1 by
// default: 2 measured no faster here (perf/RESULTS.md, "Two readies in flight"); the
// loop below handles either, and KEEL_TEST_RAFT_READY_DEPTH chooses.
constexpr std::size_t readies_in_flight_max = 1;

struct cluster_state {
  module_context* context = nullptr;
  std::deque<std::shared_ptr<persisting_ready>> persisting;  // oldest first
  std::string token;     // the cluster token: new members' ids are computed with it
  bool removed = false;  // this member was removed from the cluster
  bool bootstrap = false;  // this member bootstraps the cluster (member.json "bootstrap")
  std::set<std::uint64_t> removed_members;  // removed while this member ran: told so when they call
  std::map<std::uint64_t, clock::time_point> heard;  // when each peer's last Raft message came
  // etcd's etcd_network_* per peer (by member id; 0: a frame whose sender a frame does not
  // name, a proposal or a snapshot piece), rendered for /metrics by render_peer_metrics.
  struct peer_traffic {
    std::uint64_t sent_bytes = 0;
    std::uint64_t received_bytes = 0;
    std::uint64_t sent_failures = 0;  // messages dropped: no connection, or its queue full
    std::uint64_t disconnects = 0;    // an outbound connection that closed
    bool active = false;              // an outbound connection is up
  };
  std::map<std::uint64_t, peer_traffic> traffic;
  // A snapshot is due: the leader stops proposing until its speculative entries are
  // committed, so the forked snapshot holds committed state only.
  bool snapshot_wanted = false;
  // A snapshot being received from the leader (frames 203), into <snap>/incoming.snap.tmp.
  struct incoming_snapshot {
    int fd = -1;
    std::uint64_t from = 0, index = 0, term = 0, offset = 0, total = 0;
    bool complete = false;
    std::string members;  // the leader's member table (JSON)
  } incoming;
  std::uint64_t snapshots_sent = 0;
  std::uint64_t snapshots_installed = 0;
  std::vector<std::string> client_urls;  // this member's advertised ones
  std::string data_dir;
  std::uint64_t self = 0;
  std::uint64_t cluster_id = 0;
  std::string name;
  std::vector<cluster_member_info> members;
  // The peer port's sockets, bound in cluster_start (so a busy port stops keeld before it
  // serves anything) and served from the owner's start.
  std::vector<std::pair<endpoint, int>> listen;
  unsigned heartbeat_ms = 100;
  unsigned election_ms = 1000;
  std::unique_ptr<raft::node> node;

  std::uint64_t kv_applied = 0;      // the store reflects every entry up to here
  std::uint64_t committed_done = 0;  // committed, applied and published
  // Leader: logged and applied at once, not yet committed: (index, revision after it).
  std::deque<std::pair<std::uint64_t, std::int64_t>> speculative;
  std::uint64_t last_logged = 0;
  std::uint64_t speculative_term = 0;  // the term the speculative entries were proposed in
  raft::role last_role = raft::role::follower;
  std::multimap<std::uint64_t, commit_waiter*> commit_waiters;

  std::coroutine_handle<> loop_waiter;
  bool kicked = false;
  bool failed = false;  // the WAL failed, or an entry could not be applied: the member stops taking part
  std::string failed_because = "its WAL failed";  // for the log line when it stops
  bool stopping = false;

  std::map<std::uint64_t, std::unique_ptr<peer_link>> peers;
  std::vector<tcp_listener*> listeners;
  std::vector<connection*> inbound;

  // Request ids of forwarded writes. Unique across restarts too: the log may still hold
  // (and hand out again) an envelope sent before a restart, which must not be taken for
  // the answer to a new request with the same id.
  std::uint64_t next_request = 1;
  std::unordered_map<std::uint64_t, forward_waiter*> forwards;

  std::vector<read_waiter*> read_next, read_current;
  bool read_round_active = false;
  std::uint64_t read_counter = 0;
  std::string read_context;
  wait_slot* read_slot = nullptr;

  std::uint64_t refused_frames = 0;
};

namespace {

cluster_state& cs() { return *g->cluster; }

void note(log_level level, const std::string& text) { cs().context->log(level, text); }

// The member stops taking part (c.failed): its owner answers 300 from now on, and no shard
// reads its store on its own any more (stop_reads_here).
void stop_serving(cluster_state& c) {
  c.failed = true;
  stop_reads_here();
}

std::string hex(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

// ---- WAL entry data <-> Raft entries ----------------------------------------------------------

// An entry must fit, with a Raft append's own fields, in one peer frame.
constexpr std::size_t entry_data_bytes_max = wire::frame_payload_bytes_max - 64 * 1024;

// Conf changes are logged with this first byte (kv entries start with their kind, 1..6 or
// entry_kind_forwarded; an empty entry is a new leader's no-op).
constexpr char conf_change_marker = static_cast<char>(0xc0);

std::string wal_data_of(const raft::entry& e) {
  if (e.type == raft::entry_type::conf_change) return std::string(1, conf_change_marker) + e.data;
  return e.data;
}

raft::entry raft_entry_of(const kv::wal_record& r) {
  raft::entry e;
  e.term = r.term;
  e.index = r.index;
  if (!r.data.empty() && r.data[0] == conf_change_marker) {
    e.type = raft::entry_type::conf_change;
    e.data = r.data.substr(1);
  } else {
    e.type = raft::entry_type::normal;
    e.data = r.data;
  }
  return e;
}

// ---- member.json ---------------------------------------------------------------------------------

std::string member_file(const std::string& dir) { return dir + "/member.json"; }

status write_file_durably(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return {errc::io_error, tmp + ": " + std::strerror(errno)};
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) return {errc::io_error, tmp + ": " + std::strerror(saved)};
  if (::rename(tmp.c_str(), path.c_str()) != 0) return {errc::io_error, path + ": " + std::strerror(errno)};
  std::string dir = path.substr(0, path.rfind('/'));
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return status::ok();
}

std::string encode_member_file(const cluster_state& c) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("name");
  w.String(c.name.c_str());
  w.Key("member_id");
  w.String(hex(c.self).c_str());
  w.Key("cluster_id");
  w.String(hex(c.cluster_id).c_str());
  w.Key("token");
  w.String(c.token.c_str());
  w.Key("bootstrap");
  w.Bool(c.bootstrap);
  w.Key("members");
  w.StartArray();
  for (const cluster_member_info& m : c.members) {
    w.StartObject();
    w.Key("id");
    w.String(hex(m.id).c_str());
    w.Key("name");
    w.String(m.name.c_str());
    w.Key("learner");
    w.Bool(m.learner);
    w.Key("peer_urls");
    w.StartArray();
    for (const std::string& u : m.peer_urls) w.String(u.c_str());
    w.EndArray();
    // What the member published (attributes entries): a log released by a snapshot no
    // longer holds them, and a member publishes once per start.
    w.Key("client_urls");
    w.StartArray();
    for (const std::string& u : m.client_urls) w.String(u.c_str());
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  if (c.removed) {
    w.Key("removed");
    w.Bool(true);
  }
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize()) + "\n";
}

result<std::uint64_t> parse_hex_id(const rapidjson::Value& v, const std::string& file, const char* what) {
  if (!v.IsString()) return status{errc::corruption, file + ": " + what + " is not a hex string"};
  std::string text = v.GetString();
  char* end = nullptr;
  errno = 0;
  unsigned long long id = std::strtoull(text.c_str(), &end, 16);
  if (text.empty() || *end != '\0' || errno != 0 || id == 0)
    return status{errc::corruption, file + ": " + what + " \"" + text + "\" is not a member id"};
  return static_cast<std::uint64_t>(id);
}

result<std::vector<cluster_member_info>> parse_members(const rapidjson::Value& members, const std::string& where) {
  std::vector<cluster_member_info> out;
  if (!members.IsArray()) return status{errc::corruption, where + ": members is not an array"};
  for (const auto& m : members.GetArray()) {
    if (!m.IsObject() || !m.HasMember("id") || !m.HasMember("name") || !m["name"].IsString() ||
        !m.HasMember("peer_urls") || !m["peer_urls"].IsArray())
      return status{errc::corruption, where + ": a member is not {id, name, peer_urls}"};
    auto id = parse_hex_id(m["id"], where, "members[].id");
    if (!id) return id.error();
    cluster_member_info info{id.value(), m["name"].GetString(), {}, {}, false};
    if (m.HasMember("learner") && m["learner"].IsBool()) info.learner = m["learner"].GetBool();
    for (const auto& u : m["peer_urls"].GetArray())
      if (u.IsString()) info.peer_urls.push_back(u.GetString());
    if (m.HasMember("client_urls") && m["client_urls"].IsArray())
      for (const auto& u : m["client_urls"].GetArray())
        if (u.IsString()) info.client_urls.push_back(u.GetString());
    out.push_back(std::move(info));
  }
  return out;
}

status read_member_file(cluster_state& c, const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  rapidjson::Document doc;
  doc.Parse(text.str().c_str());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("name") || !doc["name"].IsString() ||
      !doc.HasMember("member_id") || !doc.HasMember("cluster_id") || !doc.HasMember("members") ||
      !doc["members"].IsArray())
    return {errc::corruption, path + ": not a keel member file (want name, member_id, cluster_id, members)"};
  c.name = doc["name"].GetString();
  auto self = parse_hex_id(doc["member_id"], path, "member_id");
  if (!self) return self.error();
  auto cluster = parse_hex_id(doc["cluster_id"], path, "cluster_id");
  if (!cluster) return cluster.error();
  c.self = self.value();
  c.cluster_id = cluster.value();
  if (doc.HasMember("removed") && doc["removed"].IsBool() && doc["removed"].GetBool())
    return {errc::invalid_argument, "member " + hex(c.self) + " (" + c.name + ") was removed from cluster " +
                                        hex(c.cluster_id) + " (" + path + " says so): its data dir cannot rejoin. "
                                        "Add a new member (keelctl member add) and start it with an empty data dir"};
  if (doc.HasMember("token") && doc["token"].IsString()) c.token = doc["token"].GetString();
  if (doc.HasMember("bootstrap") && doc["bootstrap"].IsBool()) c.bootstrap = doc["bootstrap"].GetBool();
  auto members = parse_members(doc["members"], path);
  if (!members) return members.error();
  c.members = std::move(members.value());
  return status::ok();
}

// ---- member attributes ---------------------------------------------------------------------------

std::string encode_attributes(std::uint64_t id, const std::string& name, const std::vector<std::string>& urls) {
  std::string out(1, static_cast<char>(entry_kind_member_attributes));
  put_u64(out, id);
  put_u32(out, static_cast<std::uint32_t>(name.size()));
  out += name;
  put_u32(out, static_cast<std::uint32_t>(urls.size()));
  for (const std::string& u : urls) {
    put_u32(out, static_cast<std::uint32_t>(u.size()));
    out += u;
  }
  return out;
}

// Applies a member's published name and client URLs; false if the bytes are malformed.
void save_member_file();

bool apply_attributes(std::string_view data) {
  std::size_t at = 1;
  auto take = [&](std::size_t n) -> std::optional<std::string_view> {
    if (data.size() - at < n) return std::nullopt;
    std::string_view v = data.substr(at, n);
    at += n;
    return v;
  };
  auto u64 = [](std::string_view b, int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(b[i])) << (8 * i);
    return v;
  };
  auto id_bytes = take(8);
  if (!id_bytes) return false;
  std::uint64_t id = u64(*id_bytes, 8);
  auto name_size = take(4);
  if (!name_size) return false;
  auto name = take(u64(*name_size, 4));
  auto count_bytes = take(4);
  if (!name || !count_bytes) return false;
  std::vector<std::string> urls;
  for (std::uint64_t i = 0, n = u64(*count_bytes, 4); i < n; ++i) {
    auto size = take(4);
    if (!size) return false;
    auto url = take(u64(*size, 4));
    if (!url) return false;
    urls.emplace_back(*url);
  }
  for (cluster_member_info& m : cs().members) {
    if (m.id != id) continue;
    bool changed = m.name != *name || m.client_urls != urls;
    m.name = std::string(*name);
    m.client_urls = std::move(urls);
    if (changed) save_member_file();
    return true;
  }
  return true;  // a member not (yet) known here: nothing to record
}

// ---- membership ------------------------------------------------------------------------------------

std::string encode_peer_urls(const std::vector<std::string>& urls) {
  std::string out;
  put_u32(out, static_cast<std::uint32_t>(urls.size()));
  for (const std::string& u : urls) {
    put_u32(out, static_cast<std::uint32_t>(u.size()));
    out += u;
  }
  return out;
}

std::vector<std::string> decode_peer_urls(std::string_view data) {
  std::vector<std::string> urls;
  auto u32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(data[at + i])) << (8 * i);
    return v;
  };
  if (data.size() < 4) return urls;
  std::size_t at = 4;
  for (std::uint32_t i = 0, n = u32(0); i < n && at + 4 <= data.size(); ++i) {
    std::uint32_t size = u32(at);
    at += 4;
    if (data.size() - at < size) break;
    urls.emplace_back(data.substr(at, size));
    at += size;
  }
  return urls;
}

void add_link(const cluster_member_info& m) {
  cluster_state& c = cs();
  if (m.id == c.self || m.peer_urls.empty() || c.peers.contains(m.id)) return;
  auto where = parse_endpoint(m.peer_urls.front());
  if (!where) {
    note(log_level::error, "member " + hex(m.id) + ": peer URL " + m.peer_urls.front() + ": " + where.error().message());
    return;
  }
  auto link = std::make_unique<peer_link>();
  link->id = m.id;
  link->name = m.name.empty() ? hex(m.id) : m.name;
  link->where = where.value();
  c.peers[m.id] = std::move(link);
  c.traffic[m.id];  // its etcd_network_* series start at 0
}

void drop_link(std::uint64_t id) {
  cluster_state& c = cs();
  auto it = c.peers.find(id);
  if (it == c.peers.end()) return;
  // The link is kept (not freed): a connect or a reader may still refer to it; it only
  // stops being used. The reader owns the connection: shutting the socket down ends it,
  // and the reader releases it.
  it->second->retired = true;
  c.traffic.erase(id);  // a removed member's series go, as etcd's do
  if (it->second->conn) {
    ::shutdown(it->second->conn->fd(), SHUT_RDWR);
    it->second->conn = nullptr;
  }
  static std::vector<std::unique_ptr<peer_link>> retired;
  retired.push_back(std::move(it->second));
  c.peers.erase(it);
}

void save_member_file() {
  cluster_state& c = cs();
  status written = write_file_durably(member_file(c.data_dir), encode_member_file(c));
  if (!written) note(log_level::error, "cannot update " + member_file(c.data_dir) + ": " + written.to_string());
}

// This member was removed (its conf change committed, or a peer said so). As etcd, it
// stops for good: member.json records it, so a restart is refused, and keeld is asked to
// stop (SIGTERM to itself, the usual shutdown), so that clients go to the members that
// remain instead of reading state here that no longer advances.
void retire_this_member() {
  cluster_state& c = cs();
  if (c.removed) return;
  c.removed = true;
  save_member_file();
  note(log_level::error, "this member was removed from the cluster: keeld stops (etcd: \"the member has been "
                         "permanently removed from the cluster\")");
  ::kill(::getpid(), SIGTERM);
}

bool is_member_entry(std::string_view data) {
  return !data.empty() && (static_cast<std::uint8_t>(data[0]) == entry_kind_member_attributes ||
                           static_cast<std::uint8_t>(data[0]) == entry_kind_member_update);
}

// A member's new peer URLs: its link is rebuilt to the new address.
bool apply_member_update(std::string_view data) {
  if (data.size() < 9) return false;
  std::uint64_t id = 0;
  for (int i = 0; i < 8; ++i) id |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(data[1 + i])) << (8 * i);
  std::vector<std::string> urls = decode_peer_urls(data.substr(9));
  if (urls.empty()) return false;
  cluster_state& c = cs();
  for (cluster_member_info& m : c.members) {
    if (m.id != id) continue;
    m.peer_urls = urls;
    drop_link(id);
    add_link(m);
    save_member_file();
    note(log_level::info, "member " + hex(id) + " now has peer URL " + urls.front());
  }
  return true;
}

bool apply_member_entry(std::string_view data) {
  if (static_cast<std::uint8_t>(data[0]) == entry_kind_member_update) return apply_member_update(data);
  return apply_attributes(data);
}

// A committed conf change: Raft's membership, then ours (names, URLs, peer links).
void apply_membership(const raft::conf_change& change, std::uint64_t index) {
  cluster_state& c = cs();
  (void)c.node->apply_conf_change(change);
  auto it = std::find_if(c.members.begin(), c.members.end(),
                         [&](const cluster_member_info& m) { return m.id == change.node; });
  bool changed = false;
  switch (change.type) {
    case raft::conf_change_type::add_voter:
    case raft::conf_change_type::add_learner: {
      bool learner = change.type == raft::conf_change_type::add_learner;
      if (it == c.members.end()) {
        cluster_member_info m{change.node, "", decode_peer_urls(change.context), {}, learner};
        c.members.push_back(m);
        add_link(m);
        changed = true;
        note(log_level::info, "entry " + std::to_string(index) + ": added member " + hex(change.node) +
                                  (learner ? " (learner)" : ""));
      } else if (it->learner != learner) {
        it->learner = learner;
        changed = true;
        note(log_level::info, "entry " + std::to_string(index) + ": member " + hex(change.node) +
                                  (learner ? " is a learner" : " promoted to voter"));
      }
      break;
    }
    case raft::conf_change_type::remove_node:
      if (it != c.members.end()) {
        c.members.erase(it);
        drop_link(change.node);
        changed = true;
        note(log_level::info, "entry " + std::to_string(index) + ": removed member " + hex(change.node));
      }
      c.removed_members.insert(change.node);
      if (change.node == c.self) retire_this_member();
      break;
  }
  if (changed) save_member_file();
  g->learner.store(cluster_self_is_learner(), std::memory_order_relaxed);
}

// ---- snapshots ------------------------------------------------------------------------------------

void refuse_frame(const std::string& from, const status& why);

// The snapshot file of entry `index` in the snap dir (its name carries term and index).
std::optional<std::string> snapshot_file_at(std::uint64_t index) {
  auto names = kv::list_snapshots(g->snap_dir);
  if (!names) return std::nullopt;
  for (const std::string& name : names.value()) {
    auto parsed = kv::parse_snapshot_name(name);
    if (parsed && parsed->second == index) return g->snap_dir + "/" + name;
  }
  return std::nullopt;
}

// A snapshot is due snapshot_interval() (snapshot-count in a cluster, core.cc) committed
// entries after the newest; it must hold committed state only, so a leader first lets its
// speculative entries commit (snapshot_wanted stops new proposals for the few milliseconds
// that takes; it is cleared whenever no snapshot is due, e.g. after one was installed).
void maybe_cluster_snapshot() {
  cluster_state& c = cs();
  if (g->snapshot_busy) return;
  if (!snapshot_due(c.committed_done)) {
    c.snapshot_wanted = false;
    return;
  }
  if (clock::now() < g->snapshot_retry_after) return;  // the last one failed (core.cc)
  if (!c.speculative.empty() || c.kv_applied != c.committed_done) {
    c.snapshot_wanted = c.node->role() == raft::role::leader;
    return;
  }
  c.snapshot_wanted = false;
  auto term = c.node->term_at(c.committed_done);
  if (!term) return;
  start_snapshot(c.committed_done, *term);
}

void incoming_reset() {
  cluster_state& c = cs();
  if (c.incoming.fd >= 0) ::close(c.incoming.fd);
  c.incoming = {};
}

std::string incoming_path() { return g->snap_dir + "/incoming.snap.tmp"; }

// One piece of a snapshot the leader streams to this member (frame 203).
void on_snapshot_chunk(const wire::frame_view& f) {
  cluster_state& c = cs();
  auto chunk = raft::decode_snapshot_chunk(f.payload.data(), f.payload.size(), c.cluster_id);
  if (!chunk) {
    refuse_frame("a peer", chunk.error());
    return;
  }
  auto& in = c.incoming;
  if (chunk->offset == 0) {
    incoming_reset();
    (void)kv::posix_wal_directory::create_directories(g->snap_dir);
    in.fd = ::open(incoming_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in.fd < 0) {
      note(log_level::error, "snapshot from the leader: " + incoming_path() + ": " + std::strerror(errno));
      return;
    }
    in.from = chunk->from;
    in.index = chunk->index;
    in.term = chunk->term;
    in.total = chunk->total;
    in.members = chunk->members;
    note(log_level::info, "receiving a snapshot at entry " + std::to_string(in.index) + " (" +
                              std::to_string(in.total) + " bytes) from " + hex(in.from));
  }
  if (in.fd < 0 || chunk->index != in.index || chunk->offset != in.offset) {
    if (in.fd >= 0) note(log_level::warn, "snapshot piece out of order at " + std::to_string(chunk->offset) + "; dropped");
    incoming_reset();
    return;
  }
  if (::write(in.fd, chunk->data.data(), chunk->data.size()) != static_cast<ssize_t>(chunk->data.size())) {
    note(log_level::error, "snapshot from the leader: writing " + incoming_path() + ": " + std::strerror(errno));
    incoming_reset();
    return;
  }
  in.offset += chunk->data.size();
  if (in.offset == in.total) {
    in.complete = ::fsync(in.fd) == 0;
    ::close(in.fd);
    in.fd = -1;
  }
}

// rd.snapshot: the received file becomes this member's newest snapshot, durably, and the
// store is rebuilt from it. False (and the member stops) when it cannot be.
void fail_waiters_after(std::uint64_t index, const status& why);
void release_waiters_for_snapshot(std::uint64_t index);

bool install_snapshot(const raft::snapshot& snap) {
  cluster_state& c = cs();
  auto& in = c.incoming;
  const auto& meta = snap.metadata;
  if (!in.complete || in.index != meta.index || in.term != meta.term) {
    note(log_level::error, "Raft installs a snapshot at entry " + std::to_string(meta.index) +
                               " but no complete file for it was received");
    return false;
  }
  std::string final_path = g->snap_dir + "/" + kv::snapshot_name(meta.term, meta.index);
  if (::rename(incoming_path().c_str(), final_path.c_str()) != 0) {
    note(log_level::error, "installing the snapshot: " + final_path + ": " + std::strerror(errno));
    return false;
  }
  if (int dfd = ::open(g->snap_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  (void)g->writer->append(kv::wal_record::snapshot(meta.index, meta.term));
  status rebuilt = rebuild_state(meta.index, [](std::uint64_t) -> const std::string* { return nullptr; });
  if (!rebuilt) {
    note(log_level::error, "restoring the received snapshot: " + rebuilt.to_string());
    return false;
  }
  rapidjson::Document doc;
  doc.Parse(in.members.c_str());
  if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("members")) {
    auto members = parse_members(doc["members"], "the leader's member table");
    if (members) {
      for (const cluster_member_info& m : members.value()) add_link(m);
      c.members = std::move(members.value());
      save_member_file();
    }
  }
  g->snapshot_previous_index = g->snapshot_index;
  g->snapshot_index = meta.index;
  // Only a follower installs a snapshot, so a write it still waits for to commit was
  // proposed while it led, in a term it lost; the snapshot may hold another entry at that
  // index. Its client is told the outcome is unknown, as after any step-down (a step-down
  // just before this snapshot may not have rebuilt: the snapshot moved the handed-out index
  // past it). Waiters that check their entry themselves are released up to the snapshot
  // and go on waiting past it.
  release_waiters_for_snapshot(meta.index);
  c.speculative.clear();
  c.kv_applied = meta.index;
  c.committed_done = meta.index;
  c.last_logged = meta.index;
  publish_resync(g->store.current_revision());
  g->applied_index.store(c.committed_done, std::memory_order_relaxed);
  g->bytes_held.store(g->store.bytes_held(), std::memory_order_relaxed);
  g->learner.store(cluster_self_is_learner(), std::memory_order_relaxed);
  ++c.snapshots_installed;
  note(log_level::info, "installed the leader's snapshot at entry " + std::to_string(meta.index) + ", revision " +
                            std::to_string(g->store.current_revision()));
  incoming_reset();
  return true;
}

// ---- the ready loop ------------------------------------------------------------------------------

void kick() {
  cluster_state& c = cs();
  c.kicked = true;
  if (c.loop_waiter) {
    auto handle = c.loop_waiter;
    c.loop_waiter = nullptr;
    shard::current()->schedule(handle);
  }
}

struct kick_awaiter {
  bool await_ready() const noexcept { return cs().kicked; }
  void await_suspend(std::coroutine_handle<> handle) noexcept { cs().loop_waiter = handle; }
  void await_resume() const noexcept { cs().kicked = false; }
};

// Speculative entries record the revision after them exactly: cluster_log pushes the
// revision before the entry, and cluster_note_applied (from the apply) moves it on.

void send_frame(peer_link& link, wire::frame_type type, std::uint64_t request_id, const std::string& payload);
void send_messages(std::vector<raft::message>& messages);

// Everything up to `index` is committed and applied: publish and answer.
void committed_through(std::uint64_t index) {
  cluster_state& c = cs();
  std::int64_t through = -1;  // the revision the newest committed speculative entry left
  while (!c.speculative.empty() && c.speculative.front().first <= index) {
    through = c.speculative.front().second;
    c.speculative.pop_front();
  }
  // With nothing speculative left, everything applied is committed.
  if (c.speculative.empty()) through = g->store.current_revision();
  c.committed_done = std::max(c.committed_done, index);
  g->applied_index.store(c.committed_done, std::memory_order_relaxed);
  g->bytes_held.store(g->store.bytes_held(), std::memory_order_relaxed);
  if (through > 0) publish_through(through);
  for (auto it = c.commit_waiters.begin(); it != c.commit_waiters.end() && it->first <= index;) {
    it->second->slot.fire(status::ok());
    it = c.commit_waiters.erase(it);
  }
}

void fail_waiters_after(std::uint64_t index, const status& why) {
  cluster_state& c = cs();
  for (auto it = c.commit_waiters.upper_bound(index); it != c.commit_waiters.end();) {
    it->second->slot.fire(why);
    it = c.commit_waiters.erase(it);
  }
}

void release_waiters_for_snapshot(std::uint64_t index) {
  cluster_state& c = cs();
  for (auto it = c.commit_waiters.begin(); it != c.commit_waiters.end();) {
    if (it->second->checks_entry && it->first > index) {
      ++it;
      continue;
    }
    it->second->slot.fire(it->second->checks_entry ? status::ok()
                                                  : status{errc::unavailable, "etcdserver: leader changed"});
    it = c.commit_waiters.erase(it);
  }
}

// A leader that stepped down may hold applied entries that will never commit.
// `committed`: the newest entry known committed (handed out in this ready or before).
void rebuild_after_step_down(std::uint64_t committed) {
  cluster_state& c = cs();
  // Everything Raft handed out as committed has been applied here (the readies still
  // in flight included); only what this member applied beyond that is speculative.
  std::uint64_t applied = std::max(c.node->handed_committed_index(), std::min(committed, c.kv_applied));
  if (c.kv_applied <= applied) {
    c.speculative.clear();
    return;
  }
  note(log_level::warn, "stepped down with entries " + std::to_string(applied + 1) + ".." +
                            std::to_string(c.kv_applied) + " applied but not known committed; rebuilding the store "
                            "from the committed log");
  static const std::string empty;
  status rebuilt = rebuild_state(applied, [&c](std::uint64_t i) -> const std::string* {
    const raft::entry* e = c.node->entry_at(i);
    if (e == nullptr) return nullptr;
    if (e->type == raft::entry_type::conf_change) return &empty;
    auto forwarded = unwrap_forwarded(e->data);
    if (is_member_entry(forwarded ? forwarded->inner : std::string_view(e->data))) return &empty;
    return &e->data;
  });
  if (!rebuilt) {
    note(log_level::error, "cannot rebuild the store: " + rebuilt.to_string() + "; this member stops serving");
    c.failed_because = "its store could not be rebuilt: " + rebuilt.to_string();
    stop_serving(c);
  }
  c.speculative.clear();
  c.kv_applied = applied;
  c.last_logged = std::min(c.last_logged, applied);
  fail_waiters_after(applied, status{errc::unavailable, "etcdserver: leader changed"});
}

// Why committed entry `e` cannot be applied, for the log line of a member that stops.
std::string unappliable(const raft::entry& e, std::string_view what) {
  return "committed entry " + std::to_string(e.index) + " (term " + std::to_string(e.term) + ") cannot be applied: " +
         std::string(what) + "; written by a newer keeld, or the log is corrupt";
}

// Applies committed entries in order. An entry this member cannot decode is not skipped:
// skipping it would leave this member's store (or membership) different from the others'
// for good. Applying stops before it, and the reason is returned; the caller stops the
// member, as etcd does (it panics), and an operator upgrades or replaces it.
status apply_committed(std::vector<raft::entry>& entries) {
  cluster_state& c = cs();
  for (raft::entry& e : entries) {
    if (e.index <= c.kv_applied) continue;  // the leader applied it when it was proposed
    if (e.type == raft::entry_type::conf_change) {
      auto change = raft::decode_conf_change(e.data);
      if (!change) return {errc::corruption, unappliable(e, "a bad conf change: " + change.error().to_string())};
      apply_membership(change.value(), e.index);
    } else if (!e.data.empty()) {
      auto forwarded = unwrap_forwarded(e.data);
      std::string_view inner = forwarded ? forwarded->inner : std::string_view(e.data);
      if (is_member_entry(inner)) {
        if (!apply_member_entry(inner)) return {errc::corruption, unappliable(e, "a bad member entry")};
        if (forwarded && forwarded->origin == c.self) cluster_deliver_outcome(forwarded->request_id, apply_outcome{});
        c.kv_applied = e.index;
        continue;
      }
      g->applying = true;
      apply_outcome outcome = apply_entry_data(forwarded ? forwarded->inner : std::string_view(e.data));
      g->applying = false;
      if (outcome.undecodable) return {errc::corruption, unappliable(e, "not a kv request")};
      if (forwarded && forwarded->origin == c.self) cluster_deliver_outcome(forwarded->request_id, std::move(outcome));
    }
    c.kv_applied = e.index;
  }
  return status::ok();
}

void serve_read_states(const std::vector<raft::read_state>& states) {
  cluster_state& c = cs();
  for (const raft::read_state& r : states)
    if (c.read_slot && r.context == c.read_context) c.read_slot->fire(status::ok());
}

void on_role(const raft::ready& rd) {
  cluster_state& c = cs();
  if (!rd.soft) return;
  // etcd counts a leader change whenever a leader becomes known that is not the one last
  // known (none counts as one: A, none, A is a change).
  std::uint64_t leader = rd.soft->leader;
  if (leader != raft::no_node && leader != g->leader_seen.load(std::memory_order_relaxed))
    g->leader_changes.fetch_add(1, std::memory_order_relaxed);
  g->leader_seen.store(leader, std::memory_order_relaxed);
  g->leading.store(rd.soft->role == raft::role::leader, std::memory_order_relaxed);
  g->learner.store(cluster_self_is_learner(), std::memory_order_relaxed);
  raft::role role = rd.soft->role;
  if (role == c.last_role) return;
  if (role == raft::role::leader) {
    note(log_level::info, "became leader at term " + std::to_string(c.node->term()));
    refresh_lease_expiries();
  } else if (c.last_role == raft::role::leader) {
    note(log_level::info, "stepped down at term " + std::to_string(c.node->term()) + "; leader is " +
                              hex(c.node->leader()));
  }
  c.last_role = role;
}

// Finishes, oldest first, the readies whose data is durable (and whose elders' is):
// sends their promises (append and vote responses), serves their reads, advances Raft.
void finish_persisted() {
  cluster_state& c = cs();
  bool advanced = false;
  while (!c.persisting.empty() && c.persisting.front()->durable && !c.failed) {
    std::shared_ptr<persisting_ready> done = std::move(c.persisting.front());
    c.persisting.pop_front();
    send_messages(done->after_persist);
    maybe_cluster_snapshot();
    serve_read_states(done->read_states);
    c.node->advance();
    advanced = true;
  }
  if (advanced) kick();  // the ready loop may take another ready now
}

task<void> await_durable(std::shared_ptr<persisting_ready> persisting) {
  task<status> syncing = durable_now();
  status durable = co_await std::move(syncing);
  cluster_state& c = cs();
  if (c.stopping) co_return;
  if (!durable) {
    if (!c.failed) note_wal_failure(durable);
    stop_serving(c);
    kick();
    co_return;
  }
  persisting->durable = true;
  finish_persisted();
}

task<void> ready_loop() {
  cluster_state& c = cs();
  while (!c.stopping && !c.failed && !c.removed) {
    if (!c.node->has_ready()) {
      co_await kick_awaiter{};
      continue;
    }
      raft::ready rd = c.node->ready();
    on_role(rd);
    g->ids.raft_term = c.node->term();
    g->committed_index.store(c.node->commit_index(), std::memory_order_relaxed);
    // Speculative entries survive only while this member leads in the term they were
    // proposed in (a member that stepped down and won again may have had them replaced).
    if (c.node->role() != raft::role::leader || c.node->term() != c.speculative_term)
      rebuild_after_step_down(rd.committed_entries.empty() ? 0 : rd.committed_entries.back().index);
    send_messages(rd.messages);
    if (!rd.snapshot.empty() && !install_snapshot(rd.snapshot)) {
      c.failed_because = "the snapshot from the leader could not be installed";
      stop_serving(c);
      break;
    }
    bool appended = false;
    for (const raft::entry& e : rd.entries) {
      kv::wal_record record = kv::wal_record::entry(e.term, e.index, wal_data_of(e));
      status ok = g->writer->append(record);
      if (!ok && ok.code() == errc::too_large && appended) {
        // The writer's pending buffer is full (a large ready): write what it holds, then
        // go on; the ready is persisted in several syncs before advance().
        task<status> draining = durable_now();
        status drained = co_await std::move(draining);
        ok = drained ? g->writer->append(record) : drained;
      }
      if (!ok) {
        note_wal_failure(ok);
        stop_serving(c);
        break;
      }
      appended = true;
    }
    if (c.failed) break;
    if (rd.hard) {
      status ok = g->writer->append(kv::wal_record::hard_state(rd.hard->term, rd.hard->vote, rd.hard->commit));
      if (!ok) {
        note_wal_failure(ok);
        stop_serving(c);
        break;
      }
      appended = true;
    }
    // Committed entries are durable here already (the raft core hands out only entries
    // at or below its stable index, and counts its own vote for an entry only once it is
    // stable), so they are applied, and their clients answered, while this ready's new
    // entries are written: an answer does not wait for the fdatasync of later entries.
    if (status applied = apply_committed(rd.committed_entries); !applied) {
      c.failed_because = applied.message();
      stop_serving(c);
      break;
    }
    if (!rd.committed_entries.empty()) committed_through(rd.committed_entries.back().index);
    auto persisting = std::make_shared<persisting_ready>();
    persisting->after_persist = std::move(rd.messages_after_persist);
    persisting->read_states = std::move(rd.read_states);
    c.persisting.push_back(persisting);
    bool sync = appended && (rd.must_sync || !rd.entries.empty());
    if (sync && !rd.snapshot.empty()) {
      // A snapshot is never pipelined (the raft core hands out nothing beside it).
      task<status> syncing = durable_now();
      status durable = co_await std::move(syncing);
      if (!durable) {
        note_wal_failure(durable);
        stop_serving(c);
        break;
      }
      persisting->durable = true;
    } else if (sync) {
      // The loop goes on to the next ready (its messages, its entries) while this one's
      // fdatasync runs; the WAL's commits complete in order.
      spawn(await_durable(persisting));
    } else {
      persisting->durable = true;
    }
    finish_persisted();
  }
  if (c.failed || c.removed) {
    // Out of the cluster: no leader known here any more, and not leading.
    g->leader_seen.store(0, std::memory_order_relaxed);
    g->leading.store(false, std::memory_order_relaxed);
    if (c.failed) note(log_level::error, "this member stopped taking part in the cluster: " + c.failed_because);
    status why = c.failed ? status{errc::unavailable, std::string(kv_messages::wal_unavailable) + "the member's log failed"}
                          : status{errc::unavailable, "etcdserver: the member has been permanently removed from the cluster"};
    fail_waiters_after(0, why);
    for (auto& [id, w] : c.forwards) {
      w->outcome.failure = why;
      w->slot.fire(status::ok());
    }
    c.forwards.clear();
    for (read_waiter* w : c.read_next) w->slot.fire(why);
    c.read_next.clear();
    if (c.read_slot) c.read_slot->fire(why);
  }
}

// etcd's rafthttp metrics (names, HELP texts, labels as etcd 3.4's), rendered on the owner
// every tick into text that /metrics copies under a lock on any shard (README "Metrics").
void render_peer_metrics() {
  cluster_state& c = cs();
  std::string out;
  auto head = [&out](const char* name, const char* type, const char* help) { append_metric_head(out, name, type, help); };
  auto sample = [&out](const char* name, const std::string& labels, std::uint64_t value) {
    out += std::string(name) + "{" + labels + "} " + std::to_string(value) + "\n";
  };
  std::string local = "Local=\"" + hex(c.self) + "\",Remote=\"";
  head("etcd_network_active_peers", "gauge", "The current number of active peer connections.");
  for (const auto& [id, t] : c.traffic)
    if (id != 0) sample("etcd_network_active_peers", local + hex(id) + "\"", t.active ? 1 : 0);
  head("etcd_network_disconnected_peers_total", "counter", "The total number of disconnected peers.");
  for (const auto& [id, t] : c.traffic)
    if (id != 0) sample("etcd_network_disconnected_peers_total", local + hex(id) + "\"", t.disconnects);
  head("etcd_network_peer_received_bytes_total", "counter", "The total number of bytes received from peers.");
  for (const auto& [id, t] : c.traffic)
    if (t.received_bytes != 0) sample("etcd_network_peer_received_bytes_total", "From=\"" + hex(id) + "\"", t.received_bytes);
  head("etcd_network_peer_sent_bytes_total", "counter", "The total number of bytes sent to peers.");
  for (const auto& [id, t] : c.traffic)
    if (id != 0) sample("etcd_network_peer_sent_bytes_total", "To=\"" + hex(id) + "\"", t.sent_bytes);
  head("etcd_network_peer_sent_failures_total", "counter", "The total number of send failures from peers.");
  for (const auto& [id, t] : c.traffic)
    if (id != 0) sample("etcd_network_peer_sent_failures_total", "To=\"" + hex(id) + "\"", t.sent_failures);
  std::lock_guard<std::mutex> hold(g->peer_metrics_lock);
  g->peer_metrics.swap(out);
}

task<void> ticker() {
  cluster_state& c = cs();
  keel::timer t;
  while (!c.stopping) {
    task<bool> sleeping = t.sleep(milliseconds(c.heartbeat_ms));
    bool elapsed = co_await std::move(sleeping);
    if (!elapsed || c.stopping) break;
    render_peer_metrics();
    if (c.failed || c.removed) break;  // no ready loop drains what ticks would produce
    c.node->tick();
    kick();
  }
}

// ---- the peer port -------------------------------------------------------------------------------

void refuse_frame(const std::string& from, const status& why) {
  cluster_state& c = cs();
  // Logged, but not without bound: the first ten, then every thousandth.
  if (c.refused_frames < 10 || c.refused_frames % 1000 == 0)
    note(log_level::warn, "peer port: refused a frame from " + from + ": " + why.to_string());
  ++c.refused_frames;
}

void send_frame(peer_link& link, wire::frame_type type, std::uint64_t request_id, const std::string& payload) {
  std::string* out = link.conn->send_queue();
  std::size_t before = out->size();
  status framed = wire::append_frame(*out, type, request_id, 0, payload.data(), payload.size());
  if (!framed) note(log_level::error, "peer frame not sent: " + framed.to_string());
  cs().traffic[link.id].sent_bytes += out->size() - before;
}

task<void> read_outbound(peer_link* link, connection* conn);

task<void> connect_peer(peer_link* link) {
  task<result<connection*>> connecting = connection::connect(link->where);
  auto conn = co_await std::move(connecting);
  link->connecting = false;
  if (!conn) {
    link->next_attempt = clock::now() + milliseconds(100);
    co_return;
  }
  if (cs().stopping || link->retired) {
    conn.value()->release();
    co_return;
  }
  link->conn = conn.value();
  cs().traffic[link->id].active = true;
  spawn(read_outbound(link, conn.value()));
}

void ensure_connecting(peer_link& link) {
  if (link.conn || link.connecting || clock::now() < link.next_attempt || cs().stopping) return;
  link.connecting = true;
  spawn(connect_peer(&link));
}

constexpr std::size_t peer_queue_bytes_max = 64u << 20;
constexpr std::string_view removed_message = "etcdserver: the member has been permanently removed from the cluster";

// Streams the snapshot file in pieces, then the SNAPSHOT message itself, on the link.
task<void> send_snapshot(peer_link* link, raft::message m) {
  cluster_state& c = cs();
  std::uint64_t index = m.snapshot.metadata.index;
  auto path = snapshot_file_at(index);
  std::string bytes;
  if (path) {
    std::ifstream file(*path, std::ios::binary);
    std::stringstream all;
    all << file.rdbuf();
    bytes = all.str();
  }
  if (bytes.empty()) {
    note(log_level::error, "no snapshot file for entry " + std::to_string(index) + " to send to " + link->name);
    c.node->report_snapshot(m.to, false);
    kick();
    co_return;
  }
  note(log_level::info, "sending the snapshot at entry " + std::to_string(index) + " (" + std::to_string(bytes.size()) +
                            " bytes) to " + link->name);
  std::string members = encode_member_file(c);
  for (std::size_t offset = 0; offset < bytes.size(); offset += raft::snapshot_chunk_bytes_max) {
    connection* conn = link->conn;
    if (!conn || conn->peer_closed() || c.stopping) {
      c.node->report_snapshot(m.to, false);
      kick();
      co_return;
    }
    raft::snapshot_chunk chunk;
    chunk.from = c.self;
    chunk.index = index;
    chunk.term = m.snapshot.metadata.term;
    chunk.offset = offset;
    chunk.total = bytes.size();
    chunk.data = bytes.substr(offset, raft::snapshot_chunk_bytes_max);
    if (offset == 0) chunk.members = members;
    send_frame(*link, wire::frame_type::raft_snapshot_chunk, 0, raft::encode_snapshot_chunk(chunk, c.cluster_id));
    if (conn->queued_bytes() > 8 * raft::snapshot_chunk_bytes_max) {
      bool alive = co_await conn->drained();
      if (!alive || link->conn != conn) {
        c.node->report_snapshot(m.to, false);
        kick();
        co_return;
      }
    }
  }
  if (!link->conn) {
    c.node->report_snapshot(m.to, false);
    kick();
    co_return;
  }
  send_frame(*link, wire::frame_type::raft_message, 0, raft::encode_raft_message(m, c.cluster_id));
  ++c.snapshots_sent;
  c.node->report_snapshot(m.to, true);
  kick();
}

void send_messages(std::vector<raft::message>& messages) {
  cluster_state& c = cs();
  for (raft::message& m : messages) {
    auto it = c.peers.find(m.to);
    if (it == c.peers.end()) continue;
    peer_link& link = *it->second;
    if (!link.conn || link.conn->peer_closed() || link.conn->queued_bytes() > peer_queue_bytes_max) {
      ++link.dropped;
      ++c.traffic[m.to].sent_failures;
      c.node->report_unreachable(m.to);
      ensure_connecting(link);
      continue;
    }
    if (m.type == raft::message_type::snapshot) {
      spawn(send_snapshot(&link, std::move(m)));
      continue;
    }
    send_frame(link, wire::frame_type::raft_message, 0, raft::encode_raft_message(m, c.cluster_id));
  }
}

status error_of_code(int code, std::string message) {
  if (code <= 0 || code > static_cast<int>(errc::unavailable)) return {errc::unavailable, std::move(message)};
  return {static_cast<errc>(code), std::move(message)};
}

void on_proposal_result(const wire::frame_view& frame) {
  cluster_state& c = cs();
  auto decoded = raft::decode_proposal_result(frame.payload.data(), frame.payload.size(), c.cluster_id);
  if (!decoded) {
    refuse_frame("the leader", decoded.error());
    return;
  }
  if (frame.header.request_id == 0 && decoded->message == removed_message) {
    retire_this_member();
    kick();
    return;
  }
  auto it = c.forwards.find(frame.header.request_id);
  if (it == c.forwards.end()) return;  // timed out already
  forward_waiter* w = it->second;
  if (decoded->code != 0) {
    w->outcome.failure = error_of_code(decoded->code, decoded->message);
    c.forwards.erase(it);
    w->slot.fire(status::ok());
  } else if (decoded->ttl != 0) {  // a keep-alive: answered here, nothing is logged
    w->ttl = decoded->ttl;
    c.forwards.erase(it);
    w->slot.fire(status::ok());
  } else if (w->wants_index) {  // the caller waits for the apply of (index, term) here
    w->index = decoded->index;
    w->term = decoded->term;
    w->answer = std::move(decoded->answer);
    c.forwards.erase(it);
    w->slot.fire(status::ok());
  }
  // Otherwise proposed: the answer is the outcome of applying it here (cluster_deliver_outcome).
}

task<void> read_outbound(peer_link* link, connection* conn) {
  wire::frame_decoder decoder;
  for (;;) {
    recv_buffer buffer = co_await conn->read();
    if (buffer.size() == 0) break;
    status decoded = wire::decode_frames(decoder, buffer.data(), buffer.size(), [](const wire::frame_view& f) {
      if (f.header.type == wire::frame_type::raft_proposal_result) on_proposal_result(f);
      return true;
    });
    if (!decoded) {
      refuse_frame(link->name, decoded);
      break;
    }
  }
  if (link->conn == conn) {
    link->conn = nullptr;
    auto& traffic = cs().traffic[link->id];
    traffic.active = false;
    ++traffic.disconnects;
  }
  conn->release();
}

void answer_proposal(connection* conn, std::uint64_t request_id, const raft::proposal_result& r) {
  std::string payload = raft::encode_proposal_result(r, cs().cluster_id);
  status framed = wire::append_frame(*conn->send_queue(), wire::frame_type::raft_proposal_result, request_id, 0,
                                     payload.data(), payload.size());
  if (!framed) note(log_level::error, "proposal result not sent: " + framed.to_string());
}

constexpr std::uint8_t entry_kind_keep_alive = 0x7d;  // a forwarded keep-alive (never logged)
// A forwarded membership change (never logged as such: the leader proposes the conf
// change): u8 0x7b | u8 type | u64 node | the peer URLs (encode_peer_urls).
constexpr std::uint8_t entry_kind_conf_request = 0x7b;
constexpr std::uint8_t conf_request_promote = 3;

std::string encode_conf_request(std::uint8_t type, std::uint64_t id, const std::vector<std::string>& urls) {
  std::string out(1, static_cast<char>(entry_kind_conf_request));
  out.push_back(static_cast<char>(type));
  put_u64(out, id);
  return out + encode_peer_urls(urls);
}

// The checks of etcd's server before a membership change, then the proposal (leader).
// Returns the conf change entry's index.
// etcd's --strict-reconfig-check (on by default): a change that would leave the cluster
// unable to reach a quorum is refused before it is logged, for it cannot be undone
// without that quorum. A member counts as started once it published its client URLs,
// and as connected if a Raft message came from it in the last 5 s (etcd's HealthInterval).
constexpr std::chrono::seconds health_interval{5};

bool connected(const cluster_state& c, std::uint64_t id, clock::time_point now) {
  if (id == c.self) return true;
  auto it = c.heard.find(id);
  return it != c.heard.end() && now - it->second < health_interval;
}

status not_enough_started() {
  return {errc::unavailable, std::string(kv_messages::not_enough_started_members)};
}

// Adding a voter (or promoting a learner): the started voters must stay a quorum of the
// larger cluster, and every voter must be connected (etcd: IsReadyToAddVotingMember,
// isConnectedFullySince).
status check_add_voter(const cluster_state& c, std::uint64_t id) {
  auto now = clock::now();
  std::size_t voters = 1, started = 0;  // the one added counts, not started
  for (const cluster_member_info& m : c.members) {
    if (m.learner || m.id == id) continue;
    ++voters;
    if (!m.client_urls.empty()) ++started;
  }
  if (started < voters / 2 + 1) return not_enough_started();
  for (const cluster_member_info& m : c.members)
    if (!m.learner && m.id != id && !connected(c, m.id, now))
      return {errc::unavailable, "etcdserver: unhealthy cluster"};
  return status::ok();
}

// Removing a voter (etcd's mayRemoveMember): the started voters left must be a quorum; a
// member that is down may go; otherwise the connected voters, less the one removed, must
// still be a quorum of the voters as they are.
status check_remove_voter(const cluster_state& c, std::uint64_t id) {
  auto now = clock::now();
  std::size_t voters = 0, left = 0, started = 0, active = 0;
  for (const cluster_member_info& m : c.members) {
    if (m.learner) continue;
    ++voters;
    if (connected(c, m.id, now)) ++active;
    if (m.id == id) continue;
    ++left;
    if (!m.client_urls.empty()) ++started;
  }
  if (started < left / 2 + 1) return not_enough_started();
  if (id != c.self && !connected(c, id, now)) return status::ok();
  if (active - 1 < 1 + (voters - 1) / 2) return {errc::unavailable, "etcdserver: unhealthy cluster"};
  return status::ok();
}

result<std::uint64_t> propose_membership(std::string_view request) {
  cluster_state& c = cs();
  if (request.size() < 10) return status{errc::invalid_argument, "a malformed membership change"};
  // Types: raft::conf_change_type's numbers, and conf_request_promote.
  bool promote = static_cast<std::uint8_t>(request[1]) == conf_request_promote;
  auto type = promote ? raft::conf_change_type::add_voter
                      : static_cast<raft::conf_change_type>(static_cast<std::uint8_t>(request[1]));
  std::uint64_t id = 0;
  for (int i = 0; i < 8; ++i) id |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(request[2 + i])) << (8 * i);
  std::vector<std::string> urls = decode_peer_urls(request.substr(10));
  if (c.node->role() != raft::role::leader) return status{errc::unavailable, "etcdserver: not leader"};
  auto it = std::find_if(c.members.begin(), c.members.end(), [&](const cluster_member_info& m) { return m.id == id; });
  if (promote && it == c.members.end()) return status{errc::not_found, "etcdserver: member not found"};
  if (promote && !it->learner) return status{errc::invalid_argument, "etcdserver: can only promote a learner member"};
  if (!promote && type == raft::conf_change_type::add_voter && it != c.members.end() && it->learner)
    return status{errc::already_exists, "etcdserver: member ID already exist"};
  switch (type) {
    case raft::conf_change_type::add_voter:
    case raft::conf_change_type::add_learner:
      if (!(it != c.members.end() && it->learner && type == raft::conf_change_type::add_voter)) {
        for (const cluster_member_info& m : c.members)
          for (const std::string& u : m.peer_urls)
            if (std::find(urls.begin(), urls.end(), u) != urls.end())
              return status{errc::already_exists, "etcdserver: peerURL exists"};
        if (it != c.members.end()) return status{errc::already_exists, "etcdserver: member ID already exist"};
      }
      if (it != c.members.end() && it->learner) {
        auto pr = c.node->progress(id);
        if (!pr || pr->match * 10 < c.node->commit_index() * 9)
          return status{errc::unavailable, "etcdserver: can only promote a learner member which is in sync with leader"};
      }
      if (type == raft::conf_change_type::add_voter)
        if (status ready = check_add_voter(c, id); !ready) return ready;
      break;
    case raft::conf_change_type::remove_node:
      if (it == c.members.end()) return status{errc::not_found, "etcdserver: member not found"};
      if (!it->learner)
        if (status ready = check_remove_voter(c, id); !ready) return ready;
      break;
  }
  raft::conf_change change{type, id, encode_peer_urls(urls)};
  auto proposed = c.node->propose_conf_change(change);
  if (!proposed) {
    std::string why = proposed.error().message();
    return status{errc::unavailable, "etcdserver: unhealthy cluster (" + why + ")"};
  }
  kick();
  return proposed->index;
}

// A relayed v2 write's outcome must fit in a frame 202 beside the result's other fields.
constexpr std::size_t relayed_answer_bytes_max = wire::frame_payload_bytes_max - 4096;

// Runs a follower's forwarded request on this leader; the answer for its proposer.
raft::proposal_result run_proposal(std::uint64_t from, std::uint64_t request_id, const std::string& data) {
  cluster_state& c = cs();
  raft::proposal_result r;
  bool keep_alive = !data.empty() && static_cast<std::uint8_t>(data[0]) == entry_kind_keep_alive;
  bool conf_request = !data.empty() && static_cast<std::uint8_t>(data[0]) == entry_kind_conf_request;
  bool v2_write = !data.empty() && static_cast<std::uint8_t>(data[0]) == v2::relayed_request_kind;
  if (c.node->role() != raft::role::leader || (!keep_alive && !conf_request && !cluster_can_propose())) {
    r.code = static_cast<int>(errc::unavailable);
    r.message = "etcdserver: not leader";
    return r;
  }
  // A relayed v2 write's entries are the leader's own (the follower waits for an index).
  g->forward_origin = v2_write ? 0 : from;
  g->forward_request = v2_write ? 0 : request_id;
  std::int64_t ttl = 0;
  status done = status::ok();
  if (conf_request) {
    auto proposed = propose_membership(data);
    if (proposed) {
      r.index = proposed.value();
    } else {
      done = proposed.error();
    }
  } else if (v2_write) {
    auto answered = v2::run_relayed(data);
    if (answered && answered->size() > relayed_answer_bytes_max) {
      done = status{errc::unavailable, "etcdserver: the leader's answer (" + std::to_string(answered->size()) +
                                           " bytes) is too large to relay; the write's outcome is not known here"};
    } else if (answered) {
      r.answer = std::move(answered.value());
      // The write's outcome holds once the follower applied the log through here (what it
      // wrote, or what it read when it failed).
      r.index = c.node->last_index();
      r.term = c.node->term_at(r.index).value_or(0);
    } else {
      done = answered.error();
    }
  } else if (is_member_entry(data)) {
    done = cluster_log(data);
    if (done && !apply_member_entry(data)) done = status{errc::invalid_argument, "a malformed member entry"};
  } else {
    done = run_forwarded_request(data, &ttl);
  }
  g->forward_origin = 0;
  g->forward_request = 0;
  if (!done) {
    r.code = static_cast<int>(done.code());
    r.message = done.message();
  } else {
    if (r.index == 0) r.index = c.last_logged;
    if (r.term == 0) r.term = c.node->term();
    r.ttl = ttl;
  }
  return r;
}

// A leader that cannot propose for a moment (a snapshot is due, or it has just been
// elected and applies its log) lets the request wait instead of refusing it.
task<void> run_proposal_later(connection* conn, std::shared_ptr<bool> alive, raft::proposal p, std::uint64_t request_id) {
  task<bool> waiting = cluster_wait_can_propose();
  (void)co_await std::move(waiting);
  raft::proposal_result r = run_proposal(p.from, request_id, p.data);
  if (*alive) answer_proposal(conn, request_id, r);
}

// A follower's v2 write (v2.h, "relaying writes"). One that logged nothing (a failed
// compare, a missing key) read this leader's state: it is answered only if a ReadIndex
// round confirms that this member still leads in the same term (cluster_confirm_leading);
// otherwise its outcome is not sent (the follower's client gets "leader changed").
task<void> run_relayed_write(connection* conn, std::shared_ptr<bool> alive, raft::proposal p, std::uint64_t request_id) {
  cluster_state& c = cs();
  if (c.node->role() == raft::role::leader && !cluster_can_propose()) {  // as run_proposal_later
    task<bool> waiting = cluster_wait_can_propose();
    (void)co_await std::move(waiting);
  }
  std::uint64_t term = c.node->term();
  std::uint64_t before = c.node->last_index();
  raft::proposal_result r = run_proposal(p.from, request_id, p.data);
  if (r.code == 0 && c.node->last_index() == before) {
    task<status> confirming = cluster_confirm_leading(term);
    if (status confirmed = co_await std::move(confirming); !confirmed) {
      r = {};
      r.code = static_cast<int>(confirmed.code());
      r.message = confirmed.message();
      // Nothing was logged: a member that is no longer the leader of `term` says "not
      // leader", and the follower asks the new leader (cluster_relay).
      if (c.node->role() != raft::role::leader || c.node->term() != term) r.message = "etcdserver: not leader";
    }
  }
  if (*alive) answer_proposal(conn, request_id, r);
}

void on_proposal(connection* conn, const std::shared_ptr<bool>& alive, const wire::frame_view& frame) {
  cluster_state& c = cs();
  auto decoded = raft::decode_proposal(frame.payload.data(), frame.payload.size(), c.cluster_id);
  if (!decoded) {
    refuse_frame("a peer", decoded.error());
    return;
  }
  const std::string& data = decoded->data;
  if (!data.empty() && static_cast<std::uint8_t>(data[0]) == v2::relayed_request_kind) {
    spawn(run_relayed_write(conn, alive, std::move(decoded.value()), frame.header.request_id));
    return;
  }
  bool needs_log = data.empty() || (static_cast<std::uint8_t>(data[0]) != entry_kind_keep_alive &&
                                    static_cast<std::uint8_t>(data[0]) != entry_kind_conf_request);
  if (needs_log && c.node->role() == raft::role::leader && !cluster_can_propose()) {
    spawn(run_proposal_later(conn, alive, std::move(decoded.value()), frame.header.request_id));
    return;
  }
  answer_proposal(conn, frame.header.request_id, run_proposal(decoded->from, frame.header.request_id, data));
}

// A member joining with --initial-cluster-state existing learns the cluster id from the
// first verified Raft message addressed to it by a member it was told about.
void adopt_cluster_id(const wire::frame_view& f) {
  cluster_state& c = cs();
  auto id = raft::peek_raft_cluster_id(f.payload.data(), f.payload.size(), c.self);
  if (!id || *id == 0) return;
  auto from = raft::peek_raft_sender(f.payload.data(), f.payload.size());
  bool known = std::any_of(c.members.begin(), c.members.end(), [&](const cluster_member_info& m) { return m.id == from; });
  if (!known) return;
  c.cluster_id = *id;
  g->ids.cluster_id = *id;
  note(log_level::info, "joined cluster " + hex(c.cluster_id) + " (first contact from member " + hex(from) + ")");
  save_member_file();
}

// Frames from a peer. `first` holds the bytes the peer port's protocol sniffing read.
task<void> serve_inbound(connection* conn, recv_buffer first) {
  cluster_state& c = cs();
  c.inbound.push_back(conn);
  auto alive = std::make_shared<bool>(true);  // answers that wait check it before writing
  wire::frame_decoder decoder;
  for (recv_buffer buffer = std::move(first);; buffer = co_await conn->read()) {
    if (buffer.size() == 0 || c.stopping) break;
    bool bad = false;
    status decoded = wire::decode_frames(decoder, buffer.data(), buffer.size(), [&](const wire::frame_view& f) {
      if (c.stopping) return false;
      std::uint64_t frame_bytes = wire::frame_header_bytes + f.payload.size();
      switch (f.header.type) {
        case wire::frame_type::raft_message: {
          if (c.cluster_id == 0) adopt_cluster_id(f);
          auto m = raft::decode_raft_message(f.payload.data(), f.payload.size(), c.cluster_id, c.self);
          if (!m) {
            refuse_frame("a peer", m.error());
            bad = true;
            return false;
          }
          if (c.peers.contains(m->from)) c.traffic[m->from].received_bytes += frame_bytes;
          if (c.failed || c.removed) return true;  // out of the cluster: nothing is stepped
          if (c.removed_members.contains(m->from)) {
            // etcd answers a removed member's messages with "removed" (it then stops).
            raft::proposal_result told;
            told.code = static_cast<int>(errc::not_found);
            told.message = std::string(removed_message);
            answer_proposal(conn, 0, told);
            return true;
          }
          c.heard[m->from] = clock::now();
          status stepped = c.node->step(m.value());
          if (!stepped) refuse_frame(hex(m->from), stepped);
          kick();
          return true;
        }
        case wire::frame_type::raft_proposal:
          c.traffic[0].received_bytes += frame_bytes;
          on_proposal(conn, alive, f);
          return true;
        case wire::frame_type::raft_snapshot_chunk:
          c.traffic[0].received_bytes += frame_bytes;
          on_snapshot_chunk(f);
          return true;
        default:
          refuse_frame("a peer", status{errc::invalid_argument, std::string("frame type ") +
                                                                    std::to_string(static_cast<unsigned>(f.header.type)) +
                                                                    " is not served on the peer port"});
          bad = true;
          return false;
      }
    });
    if (!decoded) {
      refuse_frame("a peer", decoded);
      std::string error_frame;
      wire::append_error_frame(error_frame, wire::frame_type::error, 0, decoded);
      conn->write(error_frame);
      break;
    }
    if (bad) break;
  }
  std::erase(c.inbound, conn);
  *alive = false;
  conn->release();
}

// ---- the peer port's HTTP side ----------------------------------------------------------
//
// A GET or HEAD request on the peer port is HTTP; anything else is keel's frames (whose
// first byte, 0xC7, starts no HTTP method). Served: etcd 3.4's peer `GET /members`, which
// etcd's proxies and joining members read (etcdserver.GetClusterFromRemotePeers), and
// `GET /version`. etcd's raft transport (POST /raft/...) is not spoken: such a request is
// refused as a bad frame.

bool is_http_read(const char* data, std::size_t size) {
  std::string_view head(data, size);
  return head.starts_with("GET ") || head.starts_with("HEAD ");
}

// etcd's membership.Member as JSON: the id as a number, then RaftAttributes and
// Attributes flattened (isLearner, name and clientURLs left out when empty).
void write_members_json(rapidjson::Writer<rapidjson::StringBuffer>& w) {
  w.StartArray();
  for (const cluster_member_info& m : cluster_members()) {
    w.StartObject();
    w.Key("id");
    w.Uint64(m.id);
    w.Key("peerURLs");
    w.StartArray();
    for (const std::string& u : m.peer_urls) w.String(u.c_str(), static_cast<rapidjson::SizeType>(u.size()));
    w.EndArray();
    if (m.learner) {
      w.Key("isLearner");
      w.Bool(true);
    }
    if (!m.name.empty()) {
      w.Key("name");
      w.String(m.name.c_str(), static_cast<rapidjson::SizeType>(m.name.size()));
    }
    if (!m.client_urls.empty()) {
      w.Key("clientURLs");
      w.StartArray();
      for (const std::string& u : m.client_urls) w.String(u.c_str(), static_cast<rapidjson::SizeType>(u.size()));
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
}

const http_router& peer_router() {
  static const http_router router = [] {
    http_router r;
    r.add("GET", "/members", [](const http_request&, http_response& response) {
      rapidjson::StringBuffer out;
      rapidjson::Writer<rapidjson::StringBuffer> w(out);
      write_members_json(w);
      response.add_header("X-Etcd-Cluster-ID", hex(cs().cluster_id));
      response.send(200, "application/json", std::string(out.GetString(), out.GetSize()) + "\n");
    });
    r.add("GET", "/version", [](const http_request&, http_response& response) {
      response.send(200, "application/json", version_json);
    });
    return r;
  }();
  return router;
}

const http_server_options& peer_http_options() {
  static const http_server_options options = [] {
    http_server_options o;
    o.router = &peer_router();
    o.body_bytes_max = 4096;
    o.is_other_protocol = [](const char* data, std::size_t size) { return !is_http_read(data, size); };
    o.serve_other_protocol = [](connection* conn, recv_buffer first) { return serve_inbound(conn, std::move(first)); };
    return o;
  }();
  return options;
}

// Publishes this member's name and client URLs through the log once per start (as etcd's
// publish), retrying until it is applied.
task<void> publish_attributes() {
  cluster_state& c = cs();
  std::string entry = encode_attributes(c.self, c.name, c.client_urls);
  while (!c.stopping && !c.failed) {
    if (cluster_can_propose()) {
      if (cluster_log(entry)) {
        (void)apply_attributes(entry);
        task<status> committing = cluster_commit();
        if (co_await std::move(committing)) co_return;
      }
    } else if (c.node->leader() != raft::no_node && c.node->leader() != c.self) {
      task<apply_outcome> forwarding = cluster_forward(entry);
      apply_outcome outcome = co_await std::move(forwarding);
      if (outcome.failure.is_ok()) co_return;
    }
    task<void> waiting = pause(milliseconds(200));
    co_await std::move(waiting);
  }
}

}  // namespace

// ---- forwarded entries -------------------------------------------------------------------------

std::string wrap_forwarded(std::uint64_t origin, std::uint64_t request_id, std::string_view inner) {
  std::string out;
  out.reserve(17 + inner.size());
  out.push_back(static_cast<char>(entry_kind_forwarded));
  put_u64(out, origin);
  put_u64(out, request_id);
  out.append(inner);
  return out;
}

std::optional<forwarded_view> unwrap_forwarded(std::string_view data) {
  if (data.size() < 17 || static_cast<std::uint8_t>(data[0]) != entry_kind_forwarded) return std::nullopt;
  forwarded_view v;
  for (int i = 0; i < 8; ++i) v.origin |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(data[1 + i])) << (8 * i);
  for (int i = 0; i < 8; ++i)
    v.request_id |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(data[9 + i])) << (8 * i);
  v.inner = data.substr(17);
  return v;
}

namespace {

// ---- building the Raft node (main thread, from core_start) ------------------------------------

status build_node(bool restart, bool join) {
  cluster_state& c = cs();
  raft::config cfg;
  cfg.id = c.self;
  cfg.heartbeat_tick = 1;
  cfg.election_tick = static_cast<int>(std::max(2u, c.election_ms / std::max(1u, c.heartbeat_ms)));
  cfg.pre_vote = true;
  cfg.check_quorum = true;
  cfg.max_outstanding_readies = readies_in_flight_max;
  // KEEL_TEST_RAFT_READY_DEPTH=2 turns the pipelining on: for measurements and tests.
  if (const char* depth = std::getenv("KEEL_TEST_RAFT_READY_DEPTH"); depth && std::atoi(depth) >= 1)
    cfg.max_outstanding_readies = static_cast<std::size_t>(std::atoi(depth));
  cfg.seed = c.self ^ static_cast<std::uint64_t>(clock::now().time_since_epoch().count());
  // The log as Raft persisted it: later entries replace earlier ones from their index;
  // entries the newest snapshot covers are not needed (the store starts from it).
  std::uint64_t snapshot_index = g->snapshot_index;
  std::vector<raft::entry> entries;
  raft::hard_state hard;
  for (const kv::wal_record& r : g->recovered.records) {
    if (r.type == kv::wal_record_type::entry) {
      if (r.index <= snapshot_index) continue;
      while (!entries.empty() && entries.back().index >= r.index) entries.pop_back();
      std::uint64_t expected = entries.empty() ? snapshot_index + 1 : entries.back().index + 1;
      if (r.index != expected)
        return {errc::corruption, g->wal_dir + ": entry " + std::to_string(r.index) + " where entry " +
                                      std::to_string(expected) + " was expected (the newest snapshot covers up to entry " +
                                      std::to_string(snapshot_index) + ")"};
      entries.push_back(raft_entry_of(r));
    } else if (r.type == kv::wal_record_type::hard_state) {
      hard = {r.term, r.vote, r.commit};
    }
  }
  std::uint64_t last = entries.empty() ? snapshot_index : entries.back().index;
  hard.commit = std::min(std::max(hard.commit, snapshot_index), last);
  if (snapshot_index > 0) {
    cfg.initial_snapshot.metadata.index = snapshot_index;
    cfg.initial_snapshot.metadata.term = g->snapshot_term;
    for (const cluster_member_info& m : c.members)
      (m.learner ? cfg.initial_snapshot.metadata.conf.learners : cfg.initial_snapshot.metadata.conf.voters).push_back(m.id);
    std::sort(cfg.initial_snapshot.metadata.conf.voters.begin(), cfg.initial_snapshot.metadata.conf.voters.end());
    std::sort(cfg.initial_snapshot.metadata.conf.learners.begin(), cfg.initial_snapshot.metadata.conf.learners.end());
    c.kv_applied = snapshot_index;
    c.committed_done = snapshot_index;
  }
  g->recovered.records.clear();
  g->recovered.records.shrink_to_fit();
  if (restart || !entries.empty()) {
    cfg.initial_hard_state = hard;
    cfg.initial_entries = std::move(entries);
    if (cfg.initial_entries.empty() && hard.empty() && c.bootstrap) {
      // member.json written but nothing logged yet: bootstrap again (never for a member
      // that joined an existing cluster: it waits for the leader again).
      for (auto& m : c.members) cfg.voters.push_back(m.id);
    }
  } else if (!join) {
    for (auto& m : c.members) cfg.voters.push_back(m.id);
  }
  std::sort(cfg.voters.begin(), cfg.voters.end());
  if (status valid = raft::validate(cfg); !valid) return {valid.code(), "raft config: " + valid.message()};
  c.node = std::make_unique<raft::node>(std::move(cfg));
  if (join) {
    // The ids came from the cluster's members (etcd's GetClusterFromRemotePeers, in
    // module.cc), so they are kept at once; a joiner whose cluster id is still unknown
    // saves them at the leader's first contact (adopt_cluster_id).
    if (c.cluster_id != 0)
      if (status written = write_file_durably(member_file(c.data_dir), encode_member_file(c)); !written) return written;
    c.context->log(log_level::info, "joining cluster " + hex(c.cluster_id) + " as member " + hex(c.self) + " (" +
                                        c.name + "); waiting for its leader to contact this member");
  } else if (!restart) {
    if (status written = write_file_durably(member_file(c.data_dir), encode_member_file(c)); !written) return written;
    c.context->log(log_level::info, "bootstrapping cluster " + hex(c.cluster_id) + " as member " + hex(c.self) + " (" +
                                        c.name + ") of " + std::to_string(c.members.size()));
  }
  g->ids.cluster_id = c.cluster_id;
  g->ids.member_id = c.self;
  return status::ok();
}

}  // namespace

// ---- start / stop ------------------------------------------------------------------------------

milliseconds cluster_request_timeout() { return request_timeout(cs().election_ms); }

void close_peer_port(cluster_state& c) {
  for (auto& [where, fd] : c.listen) ::close(fd);
  c.listen.clear();
}

// Binds every --listen-peer-urls address, exclusively: a port another process listens on
// (a second keeld given the same flags) is an error here, as etcd's "bind: address
// already in use" is, not a port silently shared with it.
status bind_peer_port(cluster_state& c, const std::vector<std::string>& urls) {
  for (const std::string& url : urls) {
    auto where = parse_endpoint(url);
    auto fd = where ? listen_tcp(where.value()) : result<int>(where.error());
    if (!fd) {
      close_peer_port(c);
      return status{fd.error().code(), "cannot listen for peers (listen-peer-urls " + url + "): " + fd.error().message()};
    }
    c.listen.emplace_back(where.value(), fd.value());
  }
  return status::ok();
}

// etcd's advertiseMatchesCluster: this member's entry in --initial-cluster must be the
// URLs it advertises, or the others would dial an address it does not answer on (keel
// compares the URLs as written; etcd also resolves host names).
status advertise_matches_cluster(const cluster_options& options) {
  std::vector<std::string> advertised = options.advertise_peer_urls;
  std::sort(advertised.begin(), advertised.end());
  for (const cluster_member& m : options.members) {
    if (m.name != options.name) continue;
    std::vector<std::string> listed = m.peer_urls;
    std::sort(listed.begin(), listed.end());
    if (listed == advertised) return status::ok();
    auto join = [](const std::vector<std::string>& urls, const std::string& prefix) {
      std::string out;
      for (const std::string& u : urls) out += (out.empty() ? "" : ",") + prefix + u;
      return out;
    };
    return {errc::invalid_argument, "--initial-cluster has " + join(listed, options.name + "=") +
                                        " but missing from --initial-advertise-peer-urls=" + join(advertised, "")};
  }
  return status::ok();
}

result<bool> cluster_start(module_context* context, const cluster_options& options) {
  auto c = std::make_unique<cluster_state>();
  c->context = context;
  c->data_dir = options.data_dir;
  c->heartbeat_ms = options.heartbeat_ms;
  c->client_urls = options.advertise_client_urls;
  c->next_request = static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) | 1;
  c->election_ms = options.election_ms;
  std::string path = member_file(options.data_dir);
  bool restart = ::access(path.c_str(), F_OK) == 0;
  if (restart) {
    if (status read = read_member_file(*c, path); !read) return read;
    context->log(log_level::info, "rejoining cluster " + hex(c->cluster_id) + " as member " + hex(c->self) + " (" +
                                      c->name + ") from " + path + "; the bootstrap flags are ignored");
  } else {
    if (options.members.size() <= 1 && !options.join_existing) return false;  // a single node: no Raft
    if (g->recovered.entries > 0)
      return status{errc::invalid_argument,
                    g->wal_dir + " already holds " + std::to_string(g->recovered.entries) + " entries but " + path +
                        " is missing. A cluster member's member.json was lost: restore it, or remove the member "
                        "(keelctl member remove) and add it again with an empty data dir. A single node's data dir "
                        "cannot become a member of a new cluster: start that member with an empty data dir"};
    c->name = options.name;
    std::vector<std::uint64_t> ids;
    for (const cluster_member& m : options.members) {
      c->members.push_back({m.id, m.name, m.peer_urls, {}, false});
      ids.push_back(m.id);
      if (m.name == options.name) c->self = m.id;
    }
    if (c->self == 0)
      return status{errc::invalid_argument, "couldn't find local name \"" + options.name +
                                                "\" in the initial cluster configuration (--initial-cluster)"};
    if (status matches = advertise_matches_cluster(options); !matches) return matches;
    c->cluster_id = options.cluster_id;  // a joiner's was read from the cluster's members
    c->bootstrap = !options.join_existing;
    c->token = options.token;
  }
  if (status bound = bind_peer_port(*c, options.listen_peer_urls); !bound) return bound;
  g->cluster = c.release();
  if (status built = build_node(restart, !restart && options.join_existing); !built) {
    close_peer_port(*g->cluster);
    delete g->cluster;
    g->cluster = nullptr;
    return built;
  }
  return true;
}

bool cluster_mode_wanted(const cluster_options& options) {
  return ::access(member_file(options.data_dir).c_str(), F_OK) == 0 || options.members.size() > 1 ||
         options.join_existing;
}

void cluster_on_owner_start(shard& s) {
  cluster_state& c = cs();
  for (const cluster_member_info& m : c.members) add_link(m);
  for (const auto& [where, fd] : c.listen) {
    c.listeners.push_back(tcp_listener::start(fd, [](int peer) {
      connection* conn = connection::adopt(peer);
      spawn(serve_http(conn, peer_http_options()));
    }));
    note(log_level::info, "listening for peers on " + where.host + ":" + std::to_string(where.port));
  }
  for (auto& [id, link] : c.peers) ensure_connecting(*link);
  g->learner.store(cluster_self_is_learner(), std::memory_order_relaxed);
  spawn(ticker());
  spawn(ready_loop());
  spawn(publish_attributes());
  kick();
  (void)s;
}

void cluster_on_owner_stop() {
  cluster_state& c = cs();
  c.stopping = true;
  for (tcp_listener* l : c.listeners) l->close();
  c.listeners.clear();
  for (auto& [id, link] : c.peers)
    if (link->conn) {
      ::shutdown(link->conn->fd(), SHUT_RDWR);  // its reader releases it
      link->conn = nullptr;
    }
  kick();
}

// ---- used by core.cc -------------------------------------------------------------------------------

bool cluster_is_leader() { return cs().node->role() == raft::role::leader; }

std::uint64_t cluster_term() { return cs().node->term(); }

bool cluster_can_propose() {
  cluster_state& c = cs();
  return !c.failed && !c.snapshot_wanted && c.node->role() == raft::role::leader &&
         c.kv_applied == c.node->last_index() &&
         c.node->lead_transferee() == raft::no_node;
}

task<bool> cluster_wait_can_propose() {
  cluster_state& c = cs();
  auto deadline = clock::now() + milliseconds(c.election_ms);
  while (!cluster_can_propose()) {
    if (c.node->role() != raft::role::leader || clock::now() > deadline) co_return false;
    task<void> waiting = pause(milliseconds(2));
    co_await std::move(waiting);
  }
  co_return true;
}

status cluster_log(std::string data) {
  cluster_state& c = cs();
  if (!cluster_can_propose()) return fail(errc::unavailable, "etcdserver: not leader");
  if (g->forward_origin != 0) data = wrap_forwarded(g->forward_origin, g->forward_request, data);
  if (data.size() > entry_data_bytes_max) return fail(errc::too_large, kv_messages::request_too_large);
  auto proposed = c.node->propose(std::move(data));
  if (!proposed) return fail(errc::unavailable, "etcdserver: " + proposed.error().message());
  c.speculative.emplace_back(proposed->index, g->store.current_revision());
  c.speculative_term = proposed->term;
  c.last_logged = proposed->index;
  c.kv_applied = proposed->index;
  kick();
  return status::ok();
}

namespace {

// Waits until this member has committed, applied and published entry `index`; "request
// timed out" at `deadline`, "leader changed" when a leader's uncommitted entries were
// dropped (fail_waiters_after). `checks_entry`: see commit_waiter.
task<status> wait_committed(std::uint64_t index, clock::time_point deadline, bool checks_entry = false) {
  cluster_state& c = cs();
  if (index <= c.committed_done) co_return status::ok();
  if (c.removed) co_return fail(errc::unavailable, "etcdserver: the member has been permanently removed from the cluster");
  if (c.failed) co_return fail(errc::unavailable, std::string(kv_messages::wal_unavailable) + "the member's log failed");
  commit_waiter w;
  w.checks_entry = checks_entry;
  auto it = c.commit_waiters.emplace(index, &w);
  auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
  g->proposals_pending.fetch_add(1, std::memory_order_relaxed);
  bool fired = co_await wait_for(w.slot, std::max(left, milliseconds(1)));
  g->proposals_pending.fetch_sub(1, std::memory_order_relaxed);
  if (!fired) {
    c.commit_waiters.erase(it);
    g->proposals_failed.fetch_add(1, std::memory_order_relaxed);
    co_return fail(errc::unavailable, "etcdserver: request timed out");
  }
  if (!w.slot.outcome) g->proposals_failed.fetch_add(1, std::memory_order_relaxed);
  co_return w.slot.outcome;
}

// Whether the entry this member holds at `index` is the one of `term` (Raft's log
// matching: one leader per term, which never rewrites its own entries). An entry already
// compacted into a snapshot counts when the snapshot's last entry is of the same term.
bool holds_entry(std::uint64_t index, std::uint64_t term) {
  cluster_state& c = cs();
  if (auto held = c.node->term_at(index)) return *held == term;
  const auto& snap = c.node->last_snapshot().metadata;
  return snap.index >= index && snap.term == term;
}

}  // namespace

task<status> cluster_commit() {
  cluster_state& c = cs();
  if (c.failed) co_return fail(errc::unavailable, std::string(kv_messages::wal_unavailable) + "the member's log failed");
  task<status> waiting = wait_committed(c.last_logged, clock::now() + request_timeout(c.election_ms));
  co_return co_await std::move(waiting);
}

namespace {

task<void> read_round() {
  cluster_state& c = cs();
  c.read_round_active = true;
  while (!c.read_next.empty() && !c.stopping) {
    c.read_current = std::move(c.read_next);
    c.read_next.clear();
    auto deadline = clock::now() + request_timeout(c.election_ms);
    bool confirmed = false;
    status outcome = status{errc::unavailable, "etcdserver: request timed out"};
    while (!confirmed && clock::now() < deadline && !c.stopping) {
      // Unique across members and restarts: the leader drops a read whose context equals
      // one still pending (it takes it for a retry).
      c.read_context = hex(c.self) + "-" + std::to_string(c.next_request) + "-" + std::to_string(++c.read_counter);
      status asked = c.node->read_index(c.read_context);
      kick();
      if (!asked) {
        task<void> waiting = pause(milliseconds(10));
        co_await std::move(waiting);
        continue;
      }
      wait_slot slot;
      c.read_slot = &slot;
      task<bool> waiting = wait_for(slot, milliseconds(std::max(200u, c.election_ms)));
      confirmed = co_await std::move(waiting);
      c.read_slot = nullptr;
      // Fired with an error: the member left the cluster or its log failed (the ready
      // loop stopped). Nothing was confirmed, and the readers are told why.
      if (confirmed) outcome = slot.outcome;
      // etcd's linearizableReadLoop: a round that ended in an error is a failed read index.
      if (confirmed && !outcome) g->read_indexes_failed.fetch_add(1, std::memory_order_relaxed);
    }
    // ... and one that timed out (however many attempts it made) a slow one.
    if (!confirmed && !c.stopping) g->read_indexes_slow.fetch_add(1, std::memory_order_relaxed);
    for (read_waiter* w : c.read_current) w->slot.fire(outcome);
    c.read_current.clear();
  }
  c.read_round_active = false;
}

}  // namespace

task<status> cluster_read_barrier() {
  cluster_state& c = cs();
  read_waiter w;
  c.read_next.push_back(&w);
  if (!c.read_round_active) spawn(read_round());
  bool fired = co_await wait_for(w.slot, request_timeout(c.election_ms) + milliseconds(500));
  if (!fired) {
    std::erase(c.read_next, &w);
    std::erase(c.read_current, &w);
    co_return fail(errc::unavailable, "etcdserver: request timed out");
  }
  co_return w.slot.outcome;
}

namespace {

// Sends `data` to the leader as request `id`; waits for a leader to be known and reachable.
task<status> send_to_leader(std::uint64_t id, const std::string& data, clock::time_point deadline) {
  cluster_state& c = cs();
  for (;;) {
    if (c.stopping) co_return fail(errc::unavailable, "etcdserver: server stopped");
    raft::node_id leader = c.node->leader();
    if (leader == c.self) co_return fail(errc::unavailable, "etcdserver: leader changed");
    if (leader != raft::no_node) {
      auto it = c.peers.find(leader);
      if (it != c.peers.end()) {
        peer_link& link = *it->second;
        if (link.conn && !link.conn->peer_closed()) {
          send_frame(link, wire::frame_type::raft_proposal, id, raft::encode_proposal({c.self, data}, c.cluster_id));
          co_return status::ok();
        }
        ensure_connecting(link);
      }
    }
    if (clock::now() > deadline) co_return fail(errc::unavailable, "etcdserver: no leader");
    task<void> waiting = pause(milliseconds(10));
    co_await std::move(waiting);
  }
}

}  // namespace

namespace {

// Sends `data` to the leader as a new forwarded request and waits until `w` is answered:
// by the leader's result frame, or by this member applying the entry. Errors: it could
// not be sent, or no answer came by `deadline`.
task<status> ask_leader(const std::string& data, forward_waiter& w, clock::time_point deadline) {
  cluster_state& c = cs();
  std::uint64_t id = c.next_request++;
  c.forwards[id] = &w;
  task<status> sending = send_to_leader(id, data, deadline);
  status sent = co_await std::move(sending);
  if (sent) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    if (!co_await wait_for(w.slot, std::max(left, milliseconds(1))))
      sent = fail(errc::unavailable, "etcdserver: request timed out");
  }
  c.forwards.erase(id);  // (whoever answered has removed it already)
  co_return sent;
}

}  // namespace

namespace {

task<apply_outcome> forward_to_leader(std::string entry) {
  cluster_state& c = cs();
  auto deadline = clock::now() + request_timeout(c.election_ms);
  for (;;) {
    forward_waiter w;
    task<status> asking = ask_leader(entry, w, deadline);
    if (status asked = co_await std::move(asking); !asked) {
      w.outcome.failure = asked;
      co_return std::move(w.outcome);
    }
    // "not leader": the member asked had lost its leadership and proposed nothing, so
    // asking the new leader is safe.
    bool refused = !w.outcome.failure.is_ok() && w.outcome.failure.message() == "etcdserver: not leader";
    if (!refused || clock::now() > deadline) co_return std::move(w.outcome);
    task<void> waiting = pause(milliseconds(10));
    co_await std::move(waiting);
  }
}

}  // namespace

task<apply_outcome> cluster_forward(std::string entry) {
  // etcd's proposal metrics count on the member the client asked: pending while the
  // leader runs it, failed when no answer came or the cluster could not take it
  // (unavailable); a refused request (a txn's compare, a missing lease) did not fail.
  g->proposals_pending.fetch_add(1, std::memory_order_relaxed);
  task<apply_outcome> forwarding = forward_to_leader(std::move(entry));
  apply_outcome outcome = co_await std::move(forwarding);
  g->proposals_pending.fetch_sub(1, std::memory_order_relaxed);
  if (outcome.failure.code() == errc::unavailable) g->proposals_failed.fetch_add(1, std::memory_order_relaxed);
  co_return outcome;
}

task<result<std::string>> cluster_relay(std::string request) {
  cluster_state& c = cs();
  auto deadline = clock::now() + request_timeout(c.election_ms);
  for (;;) {
    forward_waiter w;
    w.wants_index = true;
    task<status> asking = ask_leader(request, w, deadline);
    if (status asked = co_await std::move(asking); !asked) {
      g->proposals_failed.fetch_add(1, std::memory_order_relaxed);  // no leader took it in time
      co_return asked;
    }
    if (w.outcome.failure.is_ok()) {
      task<status> applying = wait_committed(w.index, deadline, true);  // counts its own failures
      if (status applied = co_await std::move(applying); !applied) co_return applied;
      if (!holds_entry(w.index, w.term)) {
        g->proposals_failed.fetch_add(1, std::memory_order_relaxed);
        co_return fail(errc::unavailable, "etcdserver: leader changed");
      }
      co_return std::move(w.answer);
    }
    // "not leader": the member asked had lost its leadership and ran nothing, so asking
    // the new leader is safe.
    if (w.outcome.failure.message() != "etcdserver: not leader" || clock::now() > deadline)
      co_return w.outcome.failure;
    task<void> waiting = pause(milliseconds(10));
    co_await std::move(waiting);
  }
}

task<status> cluster_confirm_leading(std::uint64_t term) {
  cluster_state& c = cs();
  task<status> barrier = cluster_read_barrier();
  if (status confirmed = co_await std::move(barrier); !confirmed) co_return confirmed;
  // The round may have been answered by a new leader after this one stepped down.
  if (c.node->role() != raft::role::leader || c.node->term() != term)
    co_return fail(errc::unavailable, "etcdserver: leader changed");
  co_return status::ok();
}

task<result<std::int64_t>> cluster_forward_keep_alive(std::int64_t lease_id) {
  std::string data(1, static_cast<char>(entry_kind_keep_alive));
  put_u64(data, static_cast<std::uint64_t>(lease_id));
  forward_waiter w;
  task<status> asking = ask_leader(data, w, clock::now() + request_timeout(cs().election_ms));
  if (status asked = co_await std::move(asking); !asked) co_return asked;
  if (!w.outcome.failure.is_ok()) co_return w.outcome.failure;
  co_return w.ttl;
}

void cluster_deliver_outcome(std::uint64_t request_id, apply_outcome outcome) {
  cluster_state& c = cs();
  auto it = c.forwards.find(request_id);
  if (it == c.forwards.end() || it->second->wants_index) return;
  forward_waiter* w = it->second;
  c.forwards.erase(it);
  w->outcome = std::move(outcome);
  w->slot.fire(status::ok());
}

void cluster_note_applied() {
  cluster_state& c = cs();
  if (!c.speculative.empty()) c.speculative.back().second = g->store.current_revision();
}

void cluster_snapshot_done(std::uint64_t index, std::uint64_t previous) {
  cluster_state& c = cs();
  (void)index;
  // Raft keeps its log from the snapshot before the newest on, as the WAL does: a member
  // a little behind still gets entries; one further behind gets the older snapshot.
  if (previous == 0 || previous <= c.node->last_snapshot().metadata.index || previous > c.node->applied_index()) return;
  status compacted = c.node->compact(previous, c.node->membership(), "");
  if (!compacted) note(log_level::warn, "raft log compaction at entry " + std::to_string(previous) + ": " + compacted.to_string());
}

cluster_status cluster_status_now() {
  cluster_state& c = cs();
  cluster_status s;
  s.member_id = c.self;
  s.cluster_id = c.cluster_id;
  s.leader = c.node->leader();
  s.term = c.node->term();
  s.raft_index = c.node->last_index();
  s.applied_index = c.committed_done;
  s.commit_index = c.node->commit_index();
  s.learner = cluster_self_is_learner();
  return s;
}

bool cluster_self_is_learner() {
  cluster_state& c = cs();
  for (const cluster_member_info& m : c.members)
    if (m.id == c.self) return m.learner;
  return false;
}

std::vector<cluster_member_info> cluster_members() {
  std::vector<cluster_member_info> out = cs().members;
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });  // etcd: by ID
  return out;
}

result<cluster_member_info> cluster_plan_add(const std::vector<std::string>& peer_urls, bool learner) {
  cluster_state& c = cs();
  if (peer_urls.empty()) return status{errc::invalid_argument, "etcdserver: member peer URLs are empty"};
  for (const std::string& u : peer_urls) {
    auto where = parse_endpoint(u);
    if (!where || !(u.starts_with("http://") || u.starts_with("https://")))
      return status{errc::invalid_argument, "etcdserver: bad peer URL " + u};
  }
  cluster_member_info m;
  // etcd's MemberAdd: NewMember(name "", urls, cluster name "", now), i.e. SHA-1 of the
  // sorted URLs and the Unix time in seconds. The new member learns it from GET /members
  // when it joins. Unlike an id computed from the URLs and the token alone, a member
  // removed and added again with the same URL gets a new id, as Raft needs.
  // A current member's URL is refused by the change itself, as etcd. Raft never takes a
  // removed id back, and the URL of a member removed within the same second hashes to
  // its old id: then the next second is used (etcd answers "ID removed" instead).
  for (std::int64_t now = ::time(nullptr);; ++now) {
    m.id = keel::compute_member_id(peer_urls, std::to_string(now));
    if (!c.removed_members.contains(m.id)) break;
  }
  m.peer_urls = peer_urls;
  m.learner = learner;
  return m;
}

task<status> cluster_change_membership(std::uint8_t type, std::uint64_t id, std::vector<std::string> peer_urls) {
  cluster_state& c = cs();
  std::string request = encode_conf_request(type, id, peer_urls);
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  if (c.node->role() == raft::role::leader) {
    auto proposed = propose_membership(request);
    if (!proposed) co_return proposed.error();
    index = proposed.value();
    term = c.node->term();
  } else {
    forward_waiter w;
    w.wants_index = true;
    task<status> asking = ask_leader(request, w, clock::now() + request_timeout(c.election_ms));
    if (status asked = co_await std::move(asking); !asked) co_return asked;
    if (!w.outcome.failure.is_ok()) co_return w.outcome.failure;
    index = w.index;
    term = w.term;
  }
  // Answered once this member applied the change (etcd waits for the apply too), and only
  // if the entry applied at `index` is the one proposed (a leader change may have put
  // another there).
  task<status> applying = wait_committed(index, clock::now() + request_timeout(c.election_ms), true);
  if (status applied = co_await std::move(applying); !applied) co_return applied;
  if (!holds_entry(index, term)) co_return fail(errc::unavailable, "etcdserver: leader changed");
  co_return status::ok();
}

task<status> cluster_update_member(std::uint64_t id, std::vector<std::string> peer_urls) {
  cluster_state& c = cs();
  if (peer_urls.empty()) co_return fail(errc::invalid_argument, "etcdserver: member peer URLs are empty");
  bool known = false;
  for (const cluster_member_info& m : c.members) {
    if (m.id == id) {
      known = true;
      continue;
    }
    for (const std::string& u : m.peer_urls)
      if (std::find(peer_urls.begin(), peer_urls.end(), u) != peer_urls.end())
        co_return fail(errc::already_exists, "etcdserver: peerURL exists");
  }
  if (!known) co_return fail(errc::not_found, "etcdserver: member not found");
  std::string entry(1, static_cast<char>(entry_kind_member_update));
  put_u64(entry, id);
  entry += encode_peer_urls(peer_urls);
  task<bool> leading = cluster_wait_can_propose();
  if (co_await std::move(leading)) {
    if (status logged = cluster_log(entry); !logged) co_return logged;
    (void)apply_member_entry(entry);
    task<status> committing = cluster_commit();
    co_return co_await std::move(committing);
  }
  task<apply_outcome> forwarding = cluster_forward(entry);
  apply_outcome outcome = co_await std::move(forwarding);
  co_return outcome.failure;
}

task<status> cluster_move_leader(std::uint64_t target) {
  cluster_state& c = cs();
  if (c.node->role() != raft::role::leader) co_return fail(errc::unavailable, "etcdserver: not leader");
  bool known = false;
  for (const cluster_member_info& m : c.members) known = known || m.id == target;
  if (!known) co_return fail(errc::not_found, "etcdserver: bad leader transferee");
  if (target == c.self) co_return status::ok();
  status asked = c.node->transfer_leadership(target);
  kick();
  if (!asked) co_return fail(errc::unavailable, "etcdserver: " + asked.message());
  auto deadline = clock::now() + milliseconds(2 * c.election_ms);
  while (clock::now() < deadline) {
    if (c.node->leader() == target) co_return status::ok();
    task<void> waiting = pause(milliseconds(10));
    co_await std::move(waiting);
  }
  co_return fail(errc::unavailable, "etcdserver: request timed out, leader transfer took too long");
}

}  // namespace keel::kv_module
