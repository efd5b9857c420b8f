// version-ceiling — the floor under perf/bench-version's GET /version target: a bare epoll
// server that answers every read() from a connection with the same fixed HTTP/1.1 200
// response (etcd's /version body), with no parsing, no allocation and no timers. It is
// not a server anyone should run: a read that holds two pipelined requests gets one answer.
// It exists so that `perf/bench-version --ceiling` can show, in the same run as keel and
// etcd, how many requests per second this machine's loopback TCP and wrk allow at all.
//
// Usage: version-ceiling PORT [THREADS]   (THREADS: default 2, one listener each,
//        SO_REUSEPORT, each thread its own epoll loop; binds 127.0.0.1 only)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr std::string_view response =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 45\r\n"
    "\r\n"
    R"({"etcdserver":"3.4.23","etcdcluster":"3.4.0"})";

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "version-ceiling: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) fail("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) fail("bind 127.0.0.1");
  if (listen(fd, 1024) != 0) fail("listen");
  return fd;
}

void watch(int epoll, int fd) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0) fail("epoll_ctl");
}

void accept_all(int epoll, int listener) {
  for (;;) {
    int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    watch(epoll, fd);
  }
}

// One request in, one fixed answer out; a closed or failed connection is closed.
void answer(int fd) {
  char buffer[4096];
  ssize_t got = read(fd, buffer, sizeof buffer);
  if (got <= 0) {
    if (got < 0 && errno == EAGAIN) return;
    close(fd);
    return;
  }
  if (write(fd, response.data(), response.size()) < 0) close(fd);
}

void serve(int port) {
  int listener = listen_on(port);
  int epoll = epoll_create1(0);
  if (epoll < 0) fail("epoll_create1");
  watch(epoll, listener);
  epoll_event events[256];
  for (;;) {
    int ready = epoll_wait(epoll, events, 256, -1);
    if (ready < 0 && errno != EINTR) fail("epoll_wait");
    for (int i = 0; i < ready; ++i) {
      if (events[i].data.fd == listener) {
        accept_all(epoll, listener);
      } else {
        answer(events[i].data.fd);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: version-ceiling PORT [THREADS]\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  int threads = argc == 3 ? std::atoi(argv[2]) : 2;
  if (port <= 0 || port > 65535 || threads <= 0 || threads > 64) {
    std::fprintf(stderr, "version-ceiling: bad PORT or THREADS\n");
    return 2;
  }
  std::vector<std::thread> loops;
  for (int i = 0; i < threads; ++i) loops.emplace_back(serve, port);
  for (std::thread& loop : loops) loop.join();
}
