// An asynchronous HTTP/1.1 server on Boost.Beast: every connection is a few callbacks on one
// io_context thread, so thousands of idle or streaming clients cost no threads. A handler gets one
// Exchange per request and answers it whole or as a chunked stream (server-sent events); it hears
// when the client goes away so the work behind the request can be cancelled.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "server/cors.h"

namespace nanoserve::server {

namespace http = boost::beast::http;
using HttpRequest = http::request<http::string_body>;

struct HttpLimits {
  uint64_t max_body_bytes = 8ull << 20;
  uint32_t max_header_bytes = 16 << 10;
  // Connections open at once; one more is answered 503 and closed. Each is a file descriptor and a
  // few KB, so the default stays well inside the usual limits.
  size_t max_connections = 4096;
  // Request bodies held in memory at once, from their headers (Content-Length, or max_body_bytes
  // when chunked) until their answers end; past it a request is answered 503 before its body is read.
  uint64_t max_buffered_bytes = 256ull << 20;
  std::chrono::milliseconds read_timeout{30'000};  // a whole request must arrive within this (slow clients)
  std::chrono::milliseconds idle_timeout{
      75'000};  // a kept-alive connection waiting for the first byte of its next request
  std::chrono::milliseconds write_timeout{60'000};  // one write to a client that stopped reading
};

// A complete answer the server sends instead of reading a request's body (the connection closes).
struct Refusal {
  http::status status;
  std::string body;  // application/json
  std::vector<std::pair<std::string, std::string>> headers = {};
};

class Connection;

// One request and its answer. Use it on the io_context's thread only (post() from elsewhere).
class Exchange {
 public:
  explicit Exchange(std::shared_ptr<Connection> connection, HttpRequest request);

  const HttpRequest& request() const { return request_; }
  std::chrono::steady_clock::time_point arrived() const { return arrived_; }  // when the whole request was read

  // A complete response. Headers beyond Content-Type go in `headers` as (name, value) pairs.
  void respond(http::status status, std::string_view content_type, std::string body,
               const std::vector<std::pair<std::string, std::string>>& headers = {});
  // A chunked response whose body is sent piece by piece.
  void start_stream(std::string_view content_type);
  void send(std::string_view chunk);
  void end_stream();

  // Called once if the client disconnects (or a write fails) before the response ends.
  void on_close(std::function<void()> callback);
  bool closed() const { return closed_; }
  bool answered() const { return answered_; }

 private:
  friend class Connection;
  void peer_closed();

  std::shared_ptr<Connection> connection_;
  HttpRequest request_;
  std::chrono::steady_clock::time_point arrived_ = std::chrono::steady_clock::now();
  std::function<void()> on_close_;
  bool closed_ = false, answered_ = false, streaming_ = false;
};

// A URL path segment with its %XX escapes decoded ("Qwen%2FQwen3" -> "Qwen/Qwen3"); a malformed
// escape is kept as it is.
std::string percent_decode(std::string_view text);

using Handler = std::function<void(std::shared_ptr<Exchange>)>;
// Sees each request's headers before its body is read: a refusal (a missing API key) is answered
// at once, so a stranger's body is never buffered.
using HeaderCheck = std::function<std::optional<Refusal>(const http::request_header<>& header)>;

class HttpServer {
 public:
  // Binds and listens at once (throws Error naming the address if it cannot).
  HttpServer(boost::asio::io_context& io, const std::string& host, uint16_t port, HttpLimits limits, Handler handler,
             HeaderCheck check = nullptr, CorsPolicy cors = CorsPolicy());
  ~HttpServer();
  uint16_t port() const;

  void start();           // accepts connections until stop_accepting()
  void stop_accepting();  // closes the listening socket
  void close_idle();      // closes connections that are between requests
  size_t connections() const;

  // What connections share with the server; they hold it, so a connection destroyed after the
  // server (its handler still queued when the io_context goes) touches nothing freed.
  struct State;

 private:
  void accept();

  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  std::shared_ptr<State> state_;
};

}  // namespace nanoserve::server
