// The kv module's native frames end to end: a real keeld (two shards, loopback, fresh
// directories) driven through keel_kv_client. Every operation of kv.fbs, pipelining,
// watches (history, cancel, compaction, a closed connection), lease expiry and etcd's
// errors with their gRPC codes.
#define BOOST_TEST_MODULE kv_native
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "keel/kv/client.h"

#ifndef KEEL_KEELD_PATH
#error "KEEL_KEELD_PATH must name the keeld binary"
#endif

namespace {

using namespace keel;
using namespace std::chrono_literals;
namespace native = kv::native;

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// One keeld for the whole run (starting it is most of a test's cost).
struct keeld_process {
  std::filesystem::path dir;
  std::uint16_t port = 0;
  pid_t pid = -1;

  keeld_process() {
    char pattern[] = "/tmp/kv_native_test.XXXXXX";
    dir = ::mkdtemp(pattern);
    port = free_port();
    std::string url = "http://127.0.0.1:" + std::to_string(port);
    std::string kv_dir = (dir / "kv").string(), core_dir = (dir / "core").string(), log = (dir / "keeld.log").string();
    pid = ::fork();
    if (pid == 0) {
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execl(KEEL_KEELD_PATH, "keeld", "--modules", "kv", "--kv.dir", kv_dir.c_str(), "--listen-client-urls",
              url.c_str(), "--data-dir", core_dir.c_str(), "--shards", "2", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto c = kv::client::connect(endpoint());
      if (c) {
        kv::range_request probe;
        probe.key = "probe";
        if (c.value()->range(probe)) return;
      }
      std::this_thread::sleep_for(50ms);
    }
    BOOST_FAIL("keeld did not answer native frames within 10 s; see " + log);
  }
  ~keeld_process() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int status = 0;
      ::waitpid(pid, &status, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port); }
};

keeld_process* g_keeld = nullptr;

struct global_keeld {
  global_keeld() { g_keeld = new keeld_process(); }
  ~global_keeld() { delete g_keeld; }
};
BOOST_TEST_GLOBAL_FIXTURE(global_keeld);

std::unique_ptr<kv::client> connect() {
  auto c = kv::client::connect("http://" + g_keeld->endpoint());
  BOOST_TEST_REQUIRE(c.is_ok(), (c ? "" : c.error().message));
  return std::move(c).value();
}

template <typename T>
T must(kv::client_result<T> r) {
  BOOST_TEST_REQUIRE(r.is_ok(), (r ? "" : r.error().message));
  return std::move(r).value();
}

kv::put_request put_of(std::string key, std::string value, std::int64_t lease = 0) {
  kv::put_request p;
  p.key = std::move(key);
  p.value = std::move(value);
  p.lease = lease;
  return p;
}

kv::range_request range_of(std::string key, std::string range_end = {}) {
  kv::range_request r;
  r.key = std::move(key);
  r.range_end = std::move(range_end);
  return r;
}

// The GET /metrics value of `name` (a plain HTTP request on the same port).
double metric(const std::string& name) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(g_keeld->port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return -1;
  std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  (void)::send(fd, request.data(), request.size(), 0);
  std::string reply;
  char chunk[4096];
  for (ssize_t n; (n = ::recv(fd, chunk, sizeof chunk, 0)) > 0;) reply.append(chunk, static_cast<std::size_t>(n));
  ::close(fd);
  auto at = reply.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(reply.c_str() + at + name.size() + 2, nullptr);
}

}  // namespace

BOOST_AUTO_TEST_CASE(put_and_range_answer_with_header_and_revision) {
  auto c = connect();
  auto first = must(c->put(put_of("/a/1", "one")));
  BOOST_TEST(first.header.cluster_id != 0u);
  BOOST_TEST(first.header.member_id != 0u);
  BOOST_TEST(first.header.raft_term >= 1u);
  auto second = must(c->put(put_of("/a/2", "two")));
  BOOST_TEST(second.header.revision == first.header.revision + 1);

  auto got = must(c->range(range_of("/a/1")));
  BOOST_TEST_REQUIRE(got.kvs.size() == 1u);
  BOOST_TEST(got.kvs[0].value == "one");
  BOOST_TEST(got.kvs[0].create_revision == first.header.revision);
  BOOST_TEST(got.kvs[0].version == 1);
  BOOST_TEST(got.header.revision == second.header.revision);

  auto prefix = must(c->range(range_of("/a/", "/a0")));
  BOOST_TEST(prefix.count == 2);
  BOOST_TEST(prefix.kvs.size() == 2u);

  kv::range_request limited = range_of("/a/", "/a0");
  limited.limit = 1;
  limited.order = kv::sort_order::descend;
  auto one = must(c->range(limited));
  BOOST_TEST_REQUIRE(one.kvs.size() == 1u);
  BOOST_TEST(one.kvs[0].key == "/a/2");
  BOOST_TEST(one.more);

  kv::range_request counting = range_of("/a/", "/a0");
  counting.count_only = true;
  auto counted = must(c->range(counting));
  BOOST_TEST(counted.kvs.empty());
  BOOST_TEST(counted.count == 2);

  kv::range_request past = range_of("/a/1");
  past.revision = first.header.revision - 1;
  BOOST_TEST(must(c->range(past)).kvs.empty());
}

BOOST_AUTO_TEST_CASE(put_returns_prev_kv_and_honours_ignore_value) {
  auto c = connect();
  must(c->put(put_of("/p", "old")));
  kv::put_request again = put_of("/p", "new");
  again.prev_kv = true;
  auto replaced = must(c->put(again));
  BOOST_TEST_REQUIRE(replaced.prev_kv.has_value());
  BOOST_TEST(replaced.prev_kv->value == "old");

  kv::put_request keep = put_of("/p", "");
  keep.ignore_value = true;
  must(c->put(keep));
  BOOST_TEST(must(c->range(range_of("/p"))).kvs.at(0).value == "new");

  kv::put_request missing = put_of("/p-missing", "");
  missing.ignore_value = true;
  auto refused = c->put(missing);
  BOOST_TEST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.error().grpc_code == 3);
  BOOST_TEST(refused.error().message == "etcdserver: key not found");
}

BOOST_AUTO_TEST_CASE(delete_range_deletes_a_prefix_with_prev_kvs) {
  auto c = connect();
  for (int i = 0; i < 3; ++i) must(c->put(put_of("/d/" + std::to_string(i), "v" + std::to_string(i))));
  kv::delete_range_request d;
  d.key = "/d/";
  d.range_end = "/d0";
  d.prev_kv = true;
  auto deleted = must(c->delete_range(d));
  BOOST_TEST(deleted.deleted == 3);
  BOOST_TEST_REQUIRE(deleted.prev_kvs.size() == 3u);
  BOOST_TEST(deleted.prev_kvs[2].value == "v2");
  BOOST_TEST(must(c->range(range_of("/d/", "/d0"))).count == 0);

  kv::delete_range_request none;
  none.key = "/d/none";
  auto nothing = must(c->delete_range(none));
  BOOST_TEST(nothing.deleted == 0);
  BOOST_TEST(nothing.header.revision == deleted.header.revision);
}

BOOST_AUTO_TEST_CASE(txn_runs_the_branch_its_compares_choose) {
  auto c = connect();
  auto base = must(c->put(put_of("/t", "1")));
  kv::txn_request t;
  kv::compare same;
  same.key = "/t";
  same.target = kv::compare_target::value;
  same.value = "1";
  kv::compare modified;
  modified.key = "/t";
  modified.target = kv::compare_target::mod;
  modified.result = kv::compare_result::equal;
  modified.number = base.header.revision;
  t.compares = {same, modified};
  t.success = {kv::request_op::of(put_of("/t", "2")), kv::request_op::of(range_of("/t"))};
  t.failure = {kv::request_op::of(put_of("/t", "failed"))};
  auto done = must(c->txn(t));
  BOOST_TEST(done.succeeded);
  BOOST_TEST_REQUIRE(done.responses.size() == 2u);
  BOOST_TEST((done.responses[0].type == kv::request_op::kind::put));
  BOOST_TEST(done.responses[0].put.revision == base.header.revision + 1);
  BOOST_TEST((done.responses[1].type == kv::request_op::kind::range));
  BOOST_TEST(done.responses[1].range.kvs.at(0).value == "2");

  auto again = must(c->txn(t));  // the value is "2" now
  BOOST_TEST(!again.succeeded);
  BOOST_TEST_REQUIRE(again.responses.size() == 1u);
  BOOST_TEST(must(c->range(range_of("/t"))).kvs.at(0).value == "failed");

  kv::txn_request duplicate;
  duplicate.success = {kv::request_op::of(put_of("/t", "x")), kv::request_op::of(put_of("/t", "y"))};
  auto refused = c->txn(duplicate);
  BOOST_TEST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.error().grpc_code == 3);
  BOOST_TEST(refused.error().message == "etcdserver: duplicate key given in txn request");
}

BOOST_AUTO_TEST_CASE(nested_txn_runs_the_branches_decided_before_any_change) {
  auto c = connect();
  kv::compare missing;  // holds while /n/a does not exist
  missing.key = "/n/a";
  missing.target = kv::compare_target::version;
  missing.number = 0;
  kv::txn_request inner;
  inner.compares = {missing};  // decided before the outer put: holds
  inner.success = {kv::request_op::of(put_of("/n/b", "1")), kv::request_op::of(range_of("/n/a"))};
  inner.failure = {kv::request_op::of(put_of("/n/c", "1"))};
  kv::txn_request outer;
  outer.compares = {missing};
  outer.success = {kv::request_op::of(put_of("/n/a", "1")), kv::request_op::of(inner)};
  auto done = must(c->txn(outer));
  BOOST_TEST(done.succeeded);
  BOOST_TEST_REQUIRE(done.responses.size() == 2u);
  const kv::response_op& nested = done.responses[1];
  BOOST_TEST_REQUIRE((nested.type == kv::request_op::kind::txn));
  BOOST_TEST(nested.txn.succeeded);
  BOOST_TEST_REQUIRE(nested.txn.responses.size() == 2u);
  BOOST_TEST(nested.txn.responses[0].put.revision == done.header.revision);
  BOOST_TEST(nested.txn.responses[1].range.kvs.at(0).value == "1");  // the outer's put
  BOOST_TEST(must(c->range(range_of("/n/b"))).kvs.size() == 1u);
  BOOST_TEST(must(c->range(range_of("/n/c"))).kvs.empty());

  kv::txn_request twice;  // the outer and the nested txn put the same key
  kv::txn_request again;
  again.success = {kv::request_op::of(put_of("/n/d", "2"))};
  twice.success = {kv::request_op::of(put_of("/n/d", "1")), kv::request_op::of(again)};
  auto refused = c->txn(twice);
  BOOST_TEST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.error().grpc_code == 3);
  BOOST_TEST(refused.error().message == "etcdserver: duplicate key given in txn request");
}

BOOST_AUTO_TEST_CASE(errors_carry_etcd_codes_and_messages) {
  auto c = connect();
  auto empty = c->put(put_of("", "v"));
  BOOST_TEST_REQUIRE(!empty.is_ok());
  BOOST_TEST(empty.error().grpc_code == 3);
  BOOST_TEST(empty.error().message == "etcdserver: key is not provided");
  BOOST_TEST((empty.error().code == errc::invalid_argument));

  auto no_lease = c->put(put_of("/l", "v", 0x1234));
  BOOST_TEST_REQUIRE(!no_lease.is_ok());
  BOOST_TEST(no_lease.error().grpc_code == 5);
  BOOST_TEST(no_lease.error().message == "etcdserver: requested lease not found");

  auto revoke = c->lease_revoke(0x4321);
  BOOST_TEST_REQUIRE(!revoke.is_ok());
  BOOST_TEST(revoke.error().grpc_code == 5);

  kv::range_request future = range_of("/x");
  future.revision = 1'000'000'000;
  auto ahead = c->range(future);
  BOOST_TEST_REQUIRE(!ahead.is_ok());
  BOOST_TEST(ahead.error().grpc_code == 11);
  BOOST_TEST(ahead.error().message == "etcdserver: mvcc: required revision is a future revision");

  // The connection is still good after refusals.
  must(c->put(put_of("/after-errors", "ok")));
}

// A payload that verifies but does not decode (the Verifier checks neither enum ranges nor
// that a union's table is present) is refused as an error frame of the request's response
// type, like the operation's own errors.
BOOST_AUTO_TEST_CASE(decode_errors_answer_as_the_response_type) {
  auto c = connect();
  auto refused = [&](wire::frame_type type, const flatbuffers::FlatBufferBuilder& b) {
    auto f = must(c->wait_frame(must(c->send_frame(type, b)), 5s));
    BOOST_TEST((f.type == native::response_type_of(type)));
    BOOST_TEST(f.is_error());
    BOOST_TEST(f.end_of_stream());
    return c->error_of(f);
  };

  flatbuffers::FlatBufferBuilder b;
  b.Finish(wire::CreateRangeRequest(b, b.CreateVector<std::uint8_t>({'/', 'r'}), 0, 0, 0,
                                    static_cast<wire::SortOrder>(7)));
  auto range = refused(wire::frame_type::range_request, b);
  BOOST_TEST((range.code == errc::invalid_argument));
  BOOST_TEST(range.grpc_code == 3);
  BOOST_TEST(range.message == "etcdserver: invalid sort order 7");

  b.Clear();
  std::vector<flatbuffers::Offset<wire::RequestOp>> ops{wire::CreateRequestOp(b)};
  b.Finish(wire::CreateTxnRequest(b, 0, b.CreateVector(ops)));
  auto txn = refused(wire::frame_type::txn_request, b);
  BOOST_TEST((txn.code == errc::invalid_argument));
  BOOST_TEST(txn.grpc_code == 3);
  BOOST_TEST(txn.message == "etcdserver: txn operation without a request");

  must(c->put(put_of("/after-decode-errors", "ok")));  // the connection goes on
}

BOOST_AUTO_TEST_CASE(compaction_makes_old_revisions_unreadable) {
  auto c = connect();
  auto v1 = must(c->put(put_of("/c", "1")));
  auto v2 = must(c->put(put_of("/c", "2")));
  auto compacted = must(c->compact(v2.header.revision));
  BOOST_TEST(compacted.header.revision >= v2.header.revision);

  kv::range_request old = range_of("/c");
  old.revision = v1.header.revision;
  auto refused = c->range(old);
  BOOST_TEST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.error().grpc_code == 11);
  BOOST_TEST(refused.error().message == "etcdserver: mvcc: required revision has been compacted");

  auto twice = c->compact(v1.header.revision);
  BOOST_TEST_REQUIRE(!twice.is_ok());
  BOOST_TEST(twice.error().grpc_code == 11);

  // A watch from a compacted revision is created, then canceled with compact_revision.
  native::watch_create_request w;
  w.key = "/c";
  w.start_revision = v1.header.revision;
  auto stream = must(c->watch(w));
  auto first = must(stream->next(5s));
  BOOST_TEST_REQUIRE(first.has_value());
  BOOST_TEST(first->canceled);
  BOOST_TEST(first->compact_revision > v1.header.revision);
  BOOST_TEST(stream->ended());
}

BOOST_AUTO_TEST_CASE(pipelines_a_thousand_puts_and_matches_answers_by_id) {
  auto c = connect();
  std::vector<kv::pending<native::put_response>> sent;
  for (int i = 0; i < 1000; ++i) sent.push_back(must(c->send_put(put_of("/pipe/" + std::to_string(i), "v"))));
  std::set<std::int64_t> revisions;
  // Waited for in reverse: answers that come first are kept until asked for.
  for (auto it = sent.rbegin(); it != sent.rend(); ++it) revisions.insert(must(c->wait(*it)).header.revision);
  BOOST_TEST(revisions.size() == 1000u);
  BOOST_TEST(*revisions.rbegin() - *revisions.begin() == 999);
  kv::range_request all = range_of("/pipe/", "/pipe0");
  all.count_only = true;
  BOOST_TEST(must(c->range(all)).count == 1000);
}

BOOST_AUTO_TEST_CASE(watch_from_a_past_revision_replays_history_then_follows) {
  auto c = connect();
  auto start = must(c->put(put_of("/w/a", "1")));
  must(c->put(put_of("/w/b", "2")));
  kv::delete_range_request d;
  d.key = "/w/a";
  must(c->delete_range(d));
  must(c->put(put_of("/other", "x")));

  native::watch_create_request w;
  w.key = "/w/";
  w.range_end = "/w0";
  w.start_revision = start.header.revision;
  w.prev_kv = true;
  auto stream = must(c->watch(w));
  BOOST_TEST(stream->created().created);

  std::vector<kv::event> seen;
  while (seen.size() < 3) {
    auto next = must(stream->next(5s));
    BOOST_TEST_REQUIRE(next.has_value());
    for (auto& e : next->events) seen.push_back(e);
  }
  BOOST_TEST(seen[0].kv.key == "/w/a");
  BOOST_TEST(seen[1].kv.key == "/w/b");
  BOOST_TEST((seen[2].type == kv::event_type::remove));
  BOOST_TEST_REQUIRE(seen[2].prev_kv.has_value());
  BOOST_TEST(seen[2].prev_kv->value == "1");

  // Live events through another connection (perhaps another shard).
  auto writer = connect();
  must(writer->put(put_of("/w/c", "3")));
  auto live = must(stream->next(5s));
  BOOST_TEST_REQUIRE(live.has_value());
  BOOST_TEST_REQUIRE(live->events.size() == 1u);
  BOOST_TEST(live->events[0].kv.value == "3");
}

BOOST_AUTO_TEST_CASE(watch_cancel_ends_the_stream) {
  auto c = connect();
  native::watch_create_request w;
  w.key = "/cancel";
  auto stream = must(c->watch(w));
  auto other = must(c->watch(w));
  BOOST_TEST(stream->watch_id() != other->watch_id());
  must(stream->cancel());
  BOOST_TEST(stream->ended());

  must(c->put(put_of("/cancel", "after")));
  auto live = must(other->next(5s));  // the other watch still works
  BOOST_TEST_REQUIRE(live.has_value());
  BOOST_TEST(live->events.at(0).kv.value == "after");

  // Cancelling an unknown watch is an error, and the connection goes on.
  flatbuffers::FlatBufferBuilder b;
  native::encode_watch_cancel(b, 999999);
  auto id = must(c->send_frame(wire::frame_type::watch_cancel_request, b));
  auto unknown = c->wait(kv::pending<native::watch_cancel_response>{id});
  BOOST_TEST_REQUIRE(!unknown.is_ok());
  BOOST_TEST(unknown.error().message == "etcdserver: mvcc: watcher does not exist");
  must(c->put(put_of("/cancel", "still")));
}

// Waits until the watchers gauge stays at `want` (watches of earlier tests end within a
// second of their cancel).
bool watchers_settle_at(double want) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (metric("keel_kv_watchers") != want) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

BOOST_AUTO_TEST_CASE(closing_the_connection_frees_its_watchers) {
  BOOST_TEST_REQUIRE(watchers_settle_at(0));
  double before = 0;
  {
    // Raw frames rather than watch_streams, whose destructors would send WatchCancel:
    // here only the closed connection tells the server.
    auto c = connect();
    native::watch_create_request w;
    w.key = "/closed";
    flatbuffers::FlatBufferBuilder b;
    for (int i = 0; i < 5; ++i) {
      native::encode(b, w);
      auto id = must(c->send_frame(wire::frame_type::watch_create_request, b));
      auto created = must(c->wait_frame(id, 5s));
      BOOST_TEST(!created.end_of_stream());
    }
    BOOST_TEST(metric("keel_kv_watchers") == before + 5);
  }
  BOOST_TEST(watchers_settle_at(before));
}

BOOST_AUTO_TEST_CASE(lease_expiry_deletes_the_key_and_the_watcher_sees_it) {
  auto c = connect();
  auto lease = must(c->lease_grant(1));  // raised to the minimum, 2 s
  BOOST_TEST(lease.id != 0);
  BOOST_TEST(lease.ttl == 2);
  must(c->put(put_of("/lease/k", "v", lease.id)));

  auto ttl = must(c->lease_time_to_live(lease.id, true));
  BOOST_TEST(ttl.granted_ttl == 2);
  BOOST_TEST(ttl.ttl > 0);
  BOOST_TEST_REQUIRE(ttl.keys.size() == 1u);
  BOOST_TEST(ttl.keys[0] == "/lease/k");
  auto listed = must(c->lease_leases());
  BOOST_TEST((std::find(listed.ids.begin(), listed.ids.end(), lease.id) != listed.ids.end()));
  auto kept = must(c->lease_keep_alive(lease.id));
  BOOST_TEST(kept.ttl == 2);

  native::watch_create_request w;
  w.key = "/lease/k";
  auto stream = must(c->watch(w));
  auto deleted = must(stream->next(8s));
  BOOST_TEST_REQUIRE(deleted.has_value());
  BOOST_TEST_REQUIRE(deleted->events.size() == 1u);
  BOOST_TEST((deleted->events[0].type == kv::event_type::remove));
  BOOST_TEST(must(c->range(range_of("/lease/k"))).kvs.empty());
  BOOST_TEST(must(c->lease_time_to_live(lease.id)).ttl == -1);
  BOOST_TEST(must(c->lease_keep_alive(lease.id)).ttl == 0);

  auto revoked = must(c->lease_grant(60));
  must(c->put(put_of("/lease/r", "v", revoked.id)));
  must(c->lease_revoke(revoked.id));
  BOOST_TEST(must(c->range(range_of("/lease/r"))).kvs.empty());
}

BOOST_AUTO_TEST_CASE(connect_names_the_endpoint_that_refused) {
  auto refused = kv::client::connect("127.0.0.1:" + std::to_string(free_port()));
  BOOST_TEST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.error().message.find("dial tcp 127.0.0.1:") == 0u);
  BOOST_TEST(refused.error().message.find("connection refused") != std::string::npos);
  auto bad = kv::client::connect("https://127.0.0.1:2379");
  BOOST_TEST_REQUIRE(!bad.is_ok());
  BOOST_TEST((bad.error().code == errc::invalid_argument));
}
