#include "server/http_server.h"

#include <fmt/format.h>

#include <deque>
#include <optional>
#include <sstream>

#include "server/api_error.h"
#include "util/error.h"

namespace nanoserve::server {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {
constexpr size_t kMaxPipelinedBytes = 1 << 20;  // bytes a client may send ahead while its request runs
}

// One client connection: reads a request, hands it to the handler, writes what the exchange
// produces, and meanwhile keeps a read open so that a disconnect is noticed at once.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(HttpServer& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {
    server_.connections_.insert(this);
  }
  ~Connection() { server_.connections_.erase(this); }

  void start() { read_request(); }
  bool idle() const { return !exchange_; }
  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  void write(std::string bytes) {
    if (closed_) return;
    pending_.push_back(std::move(bytes));
    write_next();
  }

  // The exchange has queued its last bytes; once they are written the connection moves on.
  void finish_exchange(bool keep_alive) {
    response_complete_ = true;
    keep_alive_ = keep_alive;
    if (!writing_) after_response();
  }

 private:
  void read_request() {
    parser_.emplace();
    parser_->body_limit(server_.limits_.max_body_bytes);
    parser_->header_limit(server_.limits_.max_header_bytes);
    // A new connection must send its request promptly; a kept-alive one may wait longer between requests.
    stream_.expires_after(served_ == 0 || buffer_.size() ? server_.limits_.read_timeout : server_.limits_.idle_timeout);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->on_request(ec);
    });
  }

  void on_request(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || closed_) {
      return close();
    }
    if (ec) return reject(ec);
    HttpRequest request = parser_->release();
    ++served_;
    stream_.expires_never();  // generation may take long; writes set their own deadline
    exchange_ = std::make_shared<Exchange>(shared_from_this(), std::move(request));
    response_complete_ = false;
    watch_peer();
    server_.handler_(exchange_);
  }

  // A request the parser refused: answer in the OpenAI error shape and close.
  void reject(beast::error_code ec) {
    const bool too_large = ec == http::error::body_limit;
    const bool header_too_large = ec == http::error::header_limit;
    const auto status = too_large ? http::status::payload_too_large
                        : header_too_large ? http::status::request_header_fields_too_large
                                           : http::status::bad_request;
    const std::string message = too_large ? fmt::format("request body exceeds the {} byte limit", server_.limits_.max_body_bytes)
                                : header_too_large ? fmt::format("request headers exceed the {} byte limit", server_.limits_.max_header_bytes)
                                                   : fmt::format("malformed HTTP request: {}", ec.message());
    http::response<http::string_body> response{status, 11};
    response.set(http::field::content_type, "application/json");
    response.set(http::field::connection, "close");
    response.body() = ApiError(static_cast<int>(status), message).body().dump();
    response.prepare_payload();
    std::ostringstream out;
    out << response;
    write(out.str());
    finish_exchange(false);
  }

  // Reads while the response is produced: bytes are kept for the next request, an error means the
  // client is gone.
  void watch_peer() {
    watching_ = true;
    stream_.socket().async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->watching_ = false;
      if (!ec) {
        self->buffer_.commit(n);
        if (self->buffer_.size() > kMaxPipelinedBytes) return self->fail();
        if (!self->response_complete_ || self->writing_) return self->watch_peer();
        return self->after_response();
      }
      if (ec == net::error::operation_aborted && !self->closed_) return self->read_request();  // response done
      self->fail();
    });
  }

  void write_next() {
    if (writing_ || pending_.empty() || closed_) return;
    writing_ = true;
    stream_.expires_after(server_.limits_.write_timeout);
    net::async_write(stream_, net::buffer(pending_.front()), [self = shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      // The connection may have failed while this write was in flight (its handler queued with
      // success): then the queue is already gone.
      if (ec || self->closed_) return self->fail();
      self->pending_.pop_front();
      if (!self->pending_.empty()) return self->write_next();
      self->stream_.expires_never();
      if (self->response_complete_) self->after_response();
    });
  }

  void after_response() {
    if (closed_ || writing_) return;
    exchange_.reset();
    if (!keep_alive_ || server_.accepting_ == false) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      closed_ = true;
      stream_.close();
      return;
    }
    if (watching_) {
      beast::error_code ignored;
      stream_.socket().cancel(ignored);  // the watch read ends with operation_aborted and reads the next request
      return;
    }
    read_request();
  }

  void fail() {
    if (closed_) return;
    closed_ = true;
    // A write in flight still points into the front buffer; drop only what was never started.
    pending_.erase(writing_ && !pending_.empty() ? pending_.begin() + 1 : pending_.begin(), pending_.end());
    if (exchange_) exchange_->peer_closed();
    exchange_.reset();
    stream_.close();
  }

  HttpServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Exchange> exchange_;
  std::deque<std::string> pending_;
  uint64_t served_ = 0;  // requests read on this connection
  bool writing_ = false, watching_ = false, closed_ = false;
  bool response_complete_ = false, keep_alive_ = true;
};

Exchange::Exchange(std::shared_ptr<Connection> connection, HttpRequest request)
    : connection_(std::move(connection)), request_(std::move(request)) {}

void Exchange::respond(http::status status, std::string_view content_type, std::string body,
                       const std::vector<std::pair<std::string, std::string>>& headers) {
  if (answered_ || closed_) return;
  answered_ = true;
  http::response<http::string_body> response{status, request_.version()};
  response.set(http::field::server, "nanoserve");
  response.set(http::field::content_type, content_type);
  for (const auto& [name, value] : headers) response.set(name, value);
  response.keep_alive(request_.keep_alive());
  response.body() = std::move(body);
  response.prepare_payload();
  std::ostringstream out;
  out << response;
  connection_->write(out.str());
  connection_->finish_exchange(request_.keep_alive());
}

void Exchange::start_stream(std::string_view content_type) {
  if (answered_ || closed_) return;
  answered_ = streaming_ = true;
  http::response<http::empty_body> response{http::status::ok, request_.version()};
  response.set(http::field::server, "nanoserve");
  response.set(http::field::content_type, content_type);
  response.set(http::field::cache_control, "no-cache");
  response.keep_alive(request_.keep_alive());
  response.chunked(true);
  std::ostringstream out;
  out << response.base();
  connection_->write(out.str());
}

void Exchange::send(std::string_view chunk) {
  if (!streaming_ || closed_ || chunk.empty()) return;
  connection_->write(fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk));
}

void Exchange::end_stream() {
  if (!streaming_ || closed_) return;
  streaming_ = false;
  connection_->write("0\r\n\r\n");
  connection_->finish_exchange(request_.keep_alive());
}

void Exchange::on_close(std::function<void()> callback) { on_close_ = std::move(callback); }

void Exchange::peer_closed() {
  if (closed_) return;
  closed_ = true;
  if (on_close_) std::exchange(on_close_, nullptr)();
}

HttpServer::HttpServer(net::io_context& io, const std::string& host, uint16_t port, HttpLimits limits, Handler handler)
    : io_(io), acceptor_(io), retry_(io), limits_(limits), handler_(std::move(handler)) {
  beast::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (ec) fail("--host {}: not an IP address", host);
  const tcp::endpoint endpoint(address, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail("cannot listen on {}:{}: {}", host, port, ec.message());
}

uint16_t HttpServer::port() const { return acceptor_.local_endpoint().port(); }

void HttpServer::start() {
  accepting_ = true;
  accept();
}

void HttpServer::accept() {
  acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (!accepting_) return;
    if (ec) {
      // Out of file descriptors (or a similar passing failure): try again shortly, don't spin.
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([this](beast::error_code) {
        if (accepting_) accept();
      });
      return;
    }
    std::make_shared<Connection>(*this, std::move(socket))->start();
    accept();
  });
}

void HttpServer::stop_accepting() {
  accepting_ = false;
  beast::error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
}

void HttpServer::close_idle() {
  std::vector<Connection*> idle;
  for (Connection* c : connections_) {
    if (c->idle()) idle.push_back(c);
  }
  for (Connection* c : idle) c->close();
}

}  // namespace nanoserve::server
