// wal-write-latency — how long one synced WAL-sized write takes on this machine's disk,
// by the three ways a log can make a direct write durable, outside keeld. It answers "is
// the disk or the process slow?" when keeld's etcd_disk_wal_fsync_duration_seconds says
// a batch's write+sync takes longer than it should (perf/RESULTS.md, session 20).
//
// Usage: wal-write-latency [--dir DIR] [--count N] [--bytes B] [--cpu C] MODE...
//   MODE: pwritev2  a blocking pwritev2(RWF_DSYNC): the caller issues the flush itself
//         dsync     one io_uring write with RWF_DSYNC (what keel's WAL does); without FUA
//                   the kernel finishes it in its dio-completion worker
//         linked    an io_uring write linked to an IORING_OP_FSYNC (datasync), which runs
//                   in an io-wq worker
//   --dir   where the 64 MiB test file goes (default /tmp; it is removed at the end)
//   --count writes per mode (default 3000), each waited for before the next
//   --bytes bytes per write, a multiple of 4096 (default 12288, ~32 v2 PUTs)
//   --cpu   pin the calling thread to this CPU first
//
// The file is allocated, written whole with zeros and fdatasynced first, so every measured
// write overwrites written blocks (as keel's zero-ahead arranges) and commits no journal.
// Prints, per mode, the mean and p50/p90/p99 in µs. Run it on an idle machine and again
// beside a CPU load (e.g. a keel GET benchmark) to see what the completion path costs.
#include <fcntl.h>
#include <liburing.h>
#include <sched.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr std::size_t file_bytes = std::size_t{64} << 20;
constexpr std::size_t block = 4096;

[[noreturn]] void fail(const std::string& what, int error) {
  std::fprintf(stderr, "wal-write-latency: %s: %s\n", what.c_str(), std::strerror(error));
  std::exit(1);
}

[[noreturn]] void usage(const std::string& what) {
  std::fprintf(stderr,
               "wal-write-latency: %s\nusage: wal-write-latency [--dir DIR] [--count N] [--bytes B] "
               "[--cpu C] pwritev2|dsync|linked...\n",
               what.c_str());
  std::exit(2);
}

struct options {
  std::string dir = "/tmp";
  int count = 3000;
  std::size_t bytes = 12288;
  int cpu = -1;
  std::vector<std::string> modes;
};

long parse_number(const std::string& flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0) usage(flag + ": not a number: " + text);
  return value;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--dir") o.dir = value();
    else if (a == "--count") o.count = static_cast<int>(parse_number(a, value()));
    else if (a == "--bytes") o.bytes = static_cast<std::size_t>(parse_number(a, value()));
    else if (a == "--cpu") o.cpu = static_cast<int>(parse_number(a, value()));
    else if (a == "pwritev2" || a == "dsync" || a == "linked") o.modes.push_back(a);
    else usage("unknown argument: " + a);
  }
  if (o.modes.empty()) usage("no mode given");
  if (o.count < 1) usage("--count must be at least 1");
  if (o.bytes == 0 || o.bytes % block != 0 || o.bytes > (std::size_t{1} << 20))
    usage("--bytes must be a multiple of 4096 up to 1 MiB");
  return o;
}

// A 64 MiB file opened O_DIRECT, every block written with zeros and fdatasynced.
int prepared_file(const std::string& path, void* zeros) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) fail("open " + path + " with O_DIRECT", errno);
  if (int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(file_bytes)); rc != 0) fail("fallocate " + path, rc);
  constexpr std::size_t chunk = std::size_t{1} << 20;
  for (std::size_t at = 0; at < file_bytes; at += chunk)
    if (::pwrite(fd, zeros, chunk, static_cast<off_t>(at)) != static_cast<ssize_t>(chunk)) fail("zero " + path, errno);
  if (::fdatasync(fd) != 0) fail("fdatasync " + path, errno);
  return fd;
}

// One durable write by `mode`; returns the bytes written or -errno.
int write_once(const std::string& mode, io_uring& ring, int fd, const void* data, std::size_t size,
               std::uint64_t offset) {
  if (mode == "pwritev2") {
    iovec iov{const_cast<void*>(data), size};
    ssize_t n = ::pwritev2(fd, &iov, 1, static_cast<off_t>(offset), RWF_DSYNC);
    return n < 0 ? -errno : static_cast<int>(n);
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_write(sqe, fd, data, static_cast<unsigned>(size), offset);
  if (mode == "dsync") {
    sqe->rw_flags = RWF_DSYNC;
  } else {
    sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  }
  if (int rc = io_uring_submit_and_wait(&ring, 1); rc < 0) return rc;
  io_uring_cqe* cqe = nullptr;
  if (int rc = io_uring_peek_cqe(&ring, &cqe); rc < 0) return rc;
  int res = cqe->res;
  io_uring_cqe_seen(&ring, cqe);
  if (mode == "linked" && res == 0) res = static_cast<int>(size);  // the fsync's CQE
  return res;
}

void measure(const options& o, const std::string& mode, io_uring& ring, void* zeros, void* data) {
  std::string path = o.dir + "/wal-write-latency." + std::to_string(::getpid());
  int fd = prepared_file(path, zeros);
  std::vector<double> micros;
  micros.reserve(static_cast<std::size_t>(o.count));
  std::uint64_t offset = 0;
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < o.count; ++i) {
    if (offset + o.bytes > file_bytes) offset = 0;
    auto start = clock::now();
    int written = write_once(mode, ring, fd, data, o.bytes, offset);
    micros.push_back(std::chrono::duration<double, std::micro>(clock::now() - start).count());
    if (written != static_cast<int>(o.bytes))
      fail(mode + " write at offset " + std::to_string(offset), written < 0 ? -written : EIO);
    offset += o.bytes;
  }
  ::close(fd);
  ::unlink(path.c_str());
  double sum = 0;
  for (double m : micros) sum += m;
  std::sort(micros.begin(), micros.end());
  auto at = [&micros](double q) { return micros[static_cast<std::size_t>(q * static_cast<double>(micros.size() - 1))]; };
  std::printf("%-9s %d writes of %zu bytes: mean %.0f us  p50 %.0f  p90 %.0f  p99 %.0f\n", mode.c_str(), o.count,
              o.bytes, sum / static_cast<double>(micros.size()), at(0.50), at(0.90), at(0.99));
}

}  // namespace

int main(int argc, char** argv) {
  options o = parse(argc, argv);
  if (o.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(o.cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) fail("pin to CPU " + std::to_string(o.cpu), errno);
  }
  void* zeros = std::aligned_alloc(block, std::size_t{1} << 20);
  void* data = std::aligned_alloc(block, o.bytes);
  if (zeros == nullptr || data == nullptr) fail("allocate buffers", ENOMEM);
  std::memset(zeros, 0, std::size_t{1} << 20);
  std::memset(data, 'x', o.bytes);
  // keel's shards use the same flags (reactor/src/shard.cc).
  io_uring ring{};
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (int rc = io_uring_queue_init_params(8, &ring, &params); rc < 0) fail("io_uring_queue_init_params", -rc);
  for (const std::string& mode : o.modes) measure(o, mode, ring, zeros, data);
  io_uring_queue_exit(&ring);
  std::free(zeros);
  std::free(data);
  return 0;
}
