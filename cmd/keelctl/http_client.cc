// cmd/keelctl/http_client.cc — see http_client.h for the contract.
#include "http_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>

namespace keel::ctl {
namespace {

using clock = std::chrono::steady_clock;

// Closes the socket on every return path.
class socket_fd {
 public:
  explicit socket_fd(int fd) noexcept : _fd(fd) {}
  socket_fd(const socket_fd&) = delete;
  socket_fd& operator=(const socket_fd&) = delete;
  ~socket_fd() {
    if (_fd >= 0) ::close(_fd);
  }
  int get() const noexcept { return _fd; }

 private:
  int _fd;
};

// Go's net package spells errno text in lower case ("connection refused"); so do we,
// because scripts written against etcdctl grep for it.
std::string errno_text(int error_number) {
  std::string text = std::strerror(error_number);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "127.0.0.1:2379" or "[::1]:2379", numeric, for error messages.
std::string numeric_address(const addrinfo& info) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (::getnameinfo(info.ai_addr, info.ai_addrlen, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  if (info.ai_family == AF_INET6) return std::string("[") + host + "]:" + port;
  return std::string(host) + ":" + port;
}

int milliseconds_until(clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
  // Round up so that poll() never spins with a zero timeout before the deadline.
  return static_cast<int>(std::max<std::int64_t>(0, left.count() + 1));
}

// Waits until `fd` is ready for `events`; false when the deadline passed first.
bool wait_for(int fd, short events, clock::time_point deadline) {
  for (;;) {
    if (clock::now() >= deadline) return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, milliseconds_until(deadline));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // let the following syscall report it
  }
}

struct dial_deadlines {
  clock::time_point dial;     // when connect() gives up: "i/o timeout"
  clock::time_point command;  // when everything gives up: "context deadline exceeded"
};

std::string deadline_error(const dial_deadlines& deadlines, const std::string& address) {
  if (deadlines.dial < deadlines.command) return "dial tcp " + address + ": i/o timeout";
  return "context deadline exceeded";
}

// Connects to one resolved address. Returns the fd, or -1 with `error` filled in.
int connect_one(const addrinfo& info, const dial_deadlines& deadlines, std::string& error) {
  std::string address = numeric_address(info);
  int fd = ::socket(info.ai_family, info.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    info.ai_protocol);
  if (fd < 0) {
    error = "dial tcp " + address + ": socket: " + errno_text(errno);
    return -1;
  }
  int rc = ::connect(fd, info.ai_addr, info.ai_addrlen);
  if (rc != 0 && errno != EINPROGRESS) {
    error = "dial tcp " + address + ": connect: " + errno_text(errno);
    ::close(fd);
    return -1;
  }
  if (rc != 0) {
    auto deadline = std::min(deadlines.dial, deadlines.command);
    if (!wait_for(fd, POLLOUT, deadline)) {
      error = deadline_error(deadlines, address);
      ::close(fd);
      return -1;
    }
    int so_error = 0;
    socklen_t length = sizeof so_error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
    if (so_error != 0) {
      error = "dial tcp " + address + ": connect: " + errno_text(so_error);
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

// Resolves and connects, trying each address in turn like Go's dialer.
std::variant<int, http_error> dial(const endpoint_address& address,
                                   const dial_deadlines& deadlines) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port = std::to_string(address.port);
  int rc = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return http_error{"dial tcp: lookup " + address.host + ": " + ::gai_strerror(rc)};
  }
  std::string error = "dial tcp: no addresses for " + address.host;
  int fd = -1;
  for (addrinfo* info = found; info != nullptr && fd < 0; info = info->ai_next) {
    fd = connect_one(*info, deadlines, error);
  }
  ::freeaddrinfo(found);
  if (fd < 0) return http_error{error};
  return fd;
}

std::optional<http_error> send_all(int fd, std::string_view bytes, clock::time_point deadline) {
  while (!bytes.empty()) {
    if (!wait_for(fd, POLLOUT, deadline)) return http_error{"context deadline exceeded"};
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return http_error{"write: " + errno_text(errno)};
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return std::nullopt;
}

// Decodes a chunked body starting at `bytes`; std::monostate when incomplete.
std::variant<std::monostate, std::string, http_error> decode_chunked(std::string_view bytes) {
  std::string body;
  for (;;) {
    std::size_t line_end = bytes.find("\r\n");
    if (line_end == std::string_view::npos) return std::monostate{};
    std::string_view size_text = trim(bytes.substr(0, std::min(line_end, bytes.find(';'))));
    std::size_t size = 0;
    auto [end, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (ec != std::errc{} || end != size_text.data() + size_text.size() || size_text.empty()) {
      return http_error{"malformed chunk size"};
    }
    bytes.remove_prefix(line_end + 2);
    if (size == 0) {
      // Trailer fields, then an empty line.
      for (;;) {
        std::size_t trailer_end = bytes.find("\r\n");
        if (trailer_end == std::string_view::npos) return std::monostate{};
        if (trailer_end == 0) return body;
        bytes.remove_prefix(trailer_end + 2);
      }
    }
    if (bytes.size() < size + 2) return std::monostate{};
    if (bytes.substr(size, 2) != "\r\n") return http_error{"malformed chunk terminator"};
    body.append(bytes.substr(0, size));
    bytes.remove_prefix(size + 2);
  }
}

}  // namespace

std::variant<endpoint_address, http_error> parse_endpoint(std::string_view url) {
  std::string_view rest = url;
  if (std::size_t scheme_end = rest.find("://"); scheme_end != std::string_view::npos) {
    std::string_view scheme = rest.substr(0, scheme_end);
    if (!iequals(scheme, "http")) {
      return http_error{"unsupported scheme \"" + std::string(scheme) + "\" in endpoint " +
                        std::string(url) + " (keelctl speaks plain http only)"};
    }
    rest.remove_prefix(scheme_end + 3);
  }
  rest = rest.substr(0, rest.find('/'));  // drop any path

  endpoint_address address;
  std::string_view port_text;
  if (rest.starts_with('[')) {
    std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return http_error{"missing ']' in endpoint " + std::string(url)};
    address.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (rest.starts_with(':')) port_text = rest.substr(1);
    else if (!rest.empty()) return http_error{"invalid endpoint " + std::string(url)};
  } else {
    std::size_t colon = rest.find(':');
    if (colon != std::string_view::npos && rest.find(':', colon + 1) != std::string_view::npos) {
      return http_error{"invalid endpoint " + std::string(url) + " (put IPv6 addresses in [])"};
    }
    address.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (address.host.empty()) return http_error{"missing host in endpoint " + std::string(url)};

  address.port = 80;
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      return http_error{"invalid port in endpoint " + std::string(url)};
    }
    address.port = static_cast<std::uint16_t>(port);
  }
  return address;
}

std::variant<std::monostate, http_response, http_error> parse_response(std::string_view bytes,
                                                                       bool at_eof) {
  auto incomplete = [&]() -> std::variant<std::monostate, http_response, http_error> {
    if (at_eof) return http_error{"unexpected EOF"};
    return std::monostate{};
  };
  std::size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return incomplete();
  std::string_view head = bytes.substr(0, head_end);
  std::string_view rest = bytes.substr(head_end + 4);

  // Status line: "HTTP/1.1 200 OK".
  std::size_t line_end = std::min(head.find("\r\n"), head.size());
  std::string_view status_line = head.substr(0, line_end);
  http_response response;
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ') {
    return http_error{"malformed HTTP response"};
  }
  auto [end, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, response.status_code);
  if (ec != std::errc{} || end != status_line.data() + 12) return http_error{"malformed HTTP status"};

  std::optional<std::size_t> content_length;
  bool chunked = false;
  head.remove_prefix(line_end);
  while (!head.empty()) {
    head.remove_prefix(2);  // the CRLF ending the previous line
    std::size_t next = std::min(head.find("\r\n"), head.size());
    std::string_view field = head.substr(0, next);
    head.remove_prefix(next);
    std::size_t colon = field.find(':');
    if (colon == std::string_view::npos) return http_error{"malformed HTTP header"};
    std::string_view name = field.substr(0, colon);
    std::string_view value = trim(field.substr(colon + 1));
    if (iequals(name, "content-length")) {
      std::size_t length = 0;
      auto [value_end, value_ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (value_ec != std::errc{} || value_end != value.data() + value.size()) {
        return http_error{"malformed Content-Length"};
      }
      content_length = length;
    } else if (iequals(name, "transfer-encoding")) {
      chunked = value.size() >= 7 && iequals(value.substr(value.size() - 7), "chunked");
    }
  }

  if (response.status_code == 204 || response.status_code == 304 || response.status_code < 200) {
    return response;
  }
  if (chunked) {
    auto decoded = decode_chunked(rest);
    if (auto* error = std::get_if<http_error>(&decoded)) return *error;
    if (std::holds_alternative<std::monostate>(decoded)) return incomplete();
    response.body = std::move(std::get<std::string>(decoded));
    return response;
  }
  if (content_length) {
    if (rest.size() < *content_length) return incomplete();
    response.body = std::string(rest.substr(0, *content_length));
    return response;
  }
  if (!at_eof) return std::monostate{};  // body runs until the server closes
  response.body = std::string(rest);
  return response;
}

namespace {

// Sends one request (`extra_headers` end in CRLF) and reads the whole reply.
std::variant<http_response, http_error> exchange(const endpoint_address& address,
                                                 std::string_view method,
                                                 std::string_view host_header,
                                                 std::string_view path,
                                                 std::string_view extra_headers,
                                                 std::string_view body,
                                                 const http_request_limits& limits) {
  auto start = clock::now();
  dial_deadlines deadlines{start + limits.dial_timeout, start + limits.command_timeout};
  auto dialed = dial(address, deadlines);
  if (auto* error = std::get_if<http_error>(&dialed)) return *error;
  socket_fd fd(std::get<int>(dialed));

  std::string request = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: " +
                        std::string(host_header) +
                        "\r\nUser-Agent: keelctl\r\nAccept: */*\r\nConnection: close\r\n" +
                        std::string(extra_headers) + "\r\n" + std::string(body);
  if (auto error = send_all(fd.get(), request, deadlines.command)) return *error;

  std::string received;
  char buffer[4096];
  for (;;) {
    if (!wait_for(fd.get(), POLLIN, deadlines.command)) return http_error{"context deadline exceeded"};
    ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return http_error{"read: " + errno_text(errno)};
    }
    received.append(buffer, static_cast<std::size_t>(n));
    if (received.size() > limits.response_bytes_max) {
      return http_error{"response larger than " + std::to_string(limits.response_bytes_max) + " bytes"};
    }
    auto parsed = parse_response(received, n == 0);
    if (auto* response = std::get_if<http_response>(&parsed)) return std::move(*response);
    if (auto* error = std::get_if<http_error>(&parsed)) return *error;
  }
}

}  // namespace

std::variant<http_response, http_error> http_get(const endpoint_address& address,
                                                 std::string_view host_header,
                                                 std::string_view path,
                                                 const http_request_limits& limits) {
  return exchange(address, "GET", host_header, path, "", "", limits);
}

std::variant<http_response, http_error> http_post(const endpoint_address& address,
                                                  std::string_view host_header,
                                                  std::string_view path,
                                                  std::string_view body,
                                                  const http_request_limits& limits) {
  std::string headers = "Content-Type: application/json\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n";
  return exchange(address, "POST", host_header, path, headers, body, limits);
}

}  // namespace keel::ctl
