// peer_probe — sends one kind of bad input to a member's peer port and prints what came
// back, for peer_input_test.py (issue 5: "bad input on the peer port never corrupts state:
// verified, rejected and logged").
//
// Usage: peer_probe HOST PORT KIND CLUSTER_ID FROM_ID TO_ID TERM [INDEX]
// KIND:
//   garbage          bytes that are not a frame (an HTTP POST, as etcd's raft transport)
//   corrupt-crc      a RaftMessage frame with one payload byte flipped after the CRC
//   other-cluster    a well-formed heartbeat from CLUSTER_ID + 1
//   forged-term      an append of term TERM carrying an entry of term TERM + 1000
//   misaddressed     a heartbeat addressed to TO_ID + 1
//   unknown-type     a frame of a type the peer port does not serve (an echo request)
//   unknown-entry    as the leader FROM_ID at TERM: after entry INDEX (of term TERM), one
//                    entry no keeld can decode, committed by the same message: what an
//                    entry of a newer keel looks like to an older member
// Prints "closed" when the member closed the connection, "error-frame: <message>" when it
// answered with an error frame first, and "open" when it kept the connection open for a
// second (a frame that was accepted, or refused without closing). Exit 0 unless the probe
// itself failed (connect).
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "keel/raft/wire.h"
#include "keel/wire/frame.h"

namespace {

std::string frame_of(keel::wire::frame_type type, const std::string& payload) {
  std::string out;
  (void)keel::wire::append_frame(out, type, 0, 0, payload.data(), payload.size());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8 && argc != 9) {
    std::fprintf(stderr, "usage: peer_probe HOST PORT KIND CLUSTER_ID FROM_ID TO_ID TERM [INDEX]\n");
    return 2;
  }
  std::string host = argv[1];
  int port = std::atoi(argv[2]);
  std::string kind = argv[3];
  std::uint64_t cluster = std::strtoull(argv[4], nullptr, 10);
  std::uint64_t from = std::strtoull(argv[5], nullptr, 10);
  std::uint64_t to = std::strtoull(argv[6], nullptr, 10);
  std::uint64_t term = std::strtoull(argv[7], nullptr, 10);
  std::uint64_t index = argc == 9 ? std::strtoull(argv[8], nullptr, 10) : 0;

  keel::raft::message m;
  m.type = keel::raft::message_type::heartbeat;
  m.from = from;
  m.to = to;
  m.term = term;
  std::string bytes;
  if (kind == "garbage") {
    // What an etcd member's raft transport would send: the peer port answers HTTP only
    // for GET and HEAD (/members, /version), so this is refused as a bad frame.
    bytes = "POST /raft HTTP/1.1\r\nHost: x\r\n\r\nthis is not a frame at all";
  } else if (kind == "corrupt-crc") {
    bytes = frame_of(keel::wire::frame_type::raft_message, keel::raft::encode_raft_message(m, cluster));
    bytes[bytes.size() - 9] ^= 0x5a;
  } else if (kind == "other-cluster") {
    bytes = frame_of(keel::wire::frame_type::raft_message, keel::raft::encode_raft_message(m, cluster + 1));
  } else if (kind == "forged-term") {
    m.type = keel::raft::message_type::append;
    m.index = 0;
    m.log_term = 0;
    keel::raft::entry e;
    e.term = term + 1000;
    e.index = 1;
    e.data = "forged";
    m.entries.push_back(e);
    bytes = frame_of(keel::wire::frame_type::raft_message, keel::raft::encode_raft_message(m, cluster));
  } else if (kind == "misaddressed") {
    m.to = to + 1;
    bytes = frame_of(keel::wire::frame_type::raft_message, keel::raft::encode_raft_message(m, cluster));
  } else if (kind == "unknown-entry") {
    m.type = keel::raft::message_type::append;
    m.index = index;
    m.log_term = term;
    keel::raft::entry e;
    e.term = term;
    e.index = index + 1;
    e.data = std::string(1, '\x60') + "an entry kind no keeld knows";
    m.entries.push_back(e);
    m.commit = index + 1;
    bytes = frame_of(keel::wire::frame_type::raft_message, keel::raft::encode_raft_message(m, cluster));
  } else if (kind == "unknown-type") {
    bytes = frame_of(keel::wire::frame_type::echo_request, std::string(16, '\0'));
  } else {
    std::fprintf(stderr, "unknown KIND %s\n", kind.c_str());
    return 2;
  }

  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("connect");
    return 1;
  }
  (void)!::write(fd, bytes.data(), bytes.size());
  std::string got;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) break;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      if (got.empty()) {
        std::printf("closed\n");
      } else {
        std::printf("error-frame: %s\n", got.size() > 24 ? got.substr(24).c_str() : "");
      }
      return 0;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  std::printf("open\n");
  return 0;
}
