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
#include <set>
#include <string>

namespace nanoserve::server {

namespace http = boost::beast::http;
using HttpRequest = http::request<http::string_body>;

struct HttpLimits {
  uint64_t max_body_bytes = 8ull << 20;
  uint32_t max_header_bytes = 16 << 10;
  std::chrono::milliseconds read_timeout{30'000};  // a whole request must arrive within this (slow clients)
  std::chrono::milliseconds idle_timeout{75'000};  // a kept-alive connection waiting for its next request
  std::chrono::milliseconds write_timeout{60'000}; // one write to a client that stopped reading
};

class Connection;

// One request and its answer. Use it on the io_context's thread only (post() from elsewhere).
class Exchange {
 public:
  explicit Exchange(std::shared_ptr<Connection> connection, HttpRequest request);

  const HttpRequest& request() const { return request_; }

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
  std::function<void()> on_close_;
  bool closed_ = false, answered_ = false, streaming_ = false;
};

using Handler = std::function<void(std::shared_ptr<Exchange>)>;

class HttpServer {
 public:
  // Binds and listens at once (throws Error naming the address if it cannot).
  HttpServer(boost::asio::io_context& io, const std::string& host, uint16_t port, HttpLimits limits, Handler handler);
  uint16_t port() const;

  void start();           // accepts connections until stop_accepting()
  void stop_accepting();  // closes the listening socket
  void close_idle();      // closes connections that are between requests
  size_t connections() const { return connections_.size(); }

 private:
  friend class Connection;
  void accept();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  HttpLimits limits_;
  Handler handler_;
  std::set<Connection*> connections_;
  bool accepting_ = false;
};

}  // namespace nanoserve::server
