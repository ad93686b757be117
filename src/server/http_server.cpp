#include "server/http_server.h"

#include <fmt/format.h>

#include <deque>
#include <optional>
#include <sstream>

#include "server/api_error.h"
#include "util/error.h"
#include "util/utf8.h"

namespace nanoserve::server {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

namespace {
constexpr size_t kMaxPipelinedBytes = 1 << 20;  // bytes a client may send ahead while its request runs
// After refusing a request whose body is still arriving: how long to keep the connection open
// before closing it. Closing at once, with the body's bytes unread, resets the connection, and the
// client may lose the answer before it reads it.
constexpr auto kLingerTime = std::chrono::seconds(2);

// A 503 for a server at one of its limits, in the OpenAI error shape.
Refusal busy(const std::string& message) {
  return {http::status::service_unavailable,
          ApiError(503, message, "", "server_error").body().dump(),
          {{"Retry-After", "1"}}};
}

std::string serialize(http::response<http::string_body>& response) {
  response.prepare_payload();
  std::ostringstream out;
  out << response;
  return out.str();
}
}  // namespace

struct HttpServer::State {
  HttpLimits limits;
  Handler handler;
  HeaderCheck check;
  CorsPolicy cors;
  std::set<Connection*> connections;
  uint64_t buffered_bytes = 0;  // request bodies reserved by connections (HttpLimits::max_buffered_bytes)
  bool accepting = false;
};

// One client connection: reads a request's headers, lets the header check refuse it, reads the
// body, hands the request to the handler, writes what the exchange produces, and meanwhile keeps a
// read open so that a disconnect is noticed at once.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<HttpServer::State> state, tcp::socket socket)
      : state_(std::move(state)), stream_(std::move(socket)) {
    state_->connections.insert(this);
  }
  ~Connection() {
    release_body();
    state_->connections.erase(this);
  }

  void start() {
    if (state_->connections.size() > state_->limits.max_connections) {
      return refuse(
          busy(fmt::format("the server has {} connections open, its limit; retry later", limits().max_connections)));
    }
    read_request();
  }
  bool idle() const { return !exchange_; }
  // The CORS headers every answer to the current request carries (none unless its origin is allowed).
  HeaderList cors_headers() const { return state_->cors.response_headers(origin_); }
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
  const HttpLimits& limits() const { return state_->limits; }

  void read_request() {
    parser_.emplace();
    parser_->body_limit(limits().max_body_bytes);
    parser_->header_limit(limits().max_header_bytes);
    if (served_ > 0 && buffer_.size() == 0) return wait_for_next();
    read_header();
  }

  // A kept-alive connection may wait idle_timeout for its next request to begin; from its first
  // byte, the request has read_timeout to arrive whole, as the first one had.
  void wait_for_next() {
    stream_.expires_after(limits().idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
      if (ec || self->closed_) return self->close();
      self->buffer_.commit(n);
      self->read_header();
    });
  }

  void read_header() {
    stream_.expires_after(limits().read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  bool ended(beast::error_code ec) const {
    return ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
           ec == net::error::connection_reset || closed_;
  }

  void on_header(beast::error_code ec) {
    if (ended(ec)) return close();
    if (ec) return reject(ec);
    const auto& header = parser_->get();
    origin_ = std::string(header[http::field::origin]);
    preflight_ = CorsPolicy::is_preflight(header);
    if (state_->check && !preflight_) {
      if (auto refusal = state_->check(header)) return refuse(std::move(*refusal));
    }
    // A chunked body may grow to the limit: it reserves the limit.
    const uint64_t body = std::min(parser_->content_length().value_or(parser_->chunked() ? limits().max_body_bytes : 0),
                                   limits().max_body_bytes);
    if (state_->buffered_bytes + body > limits().max_buffered_bytes) {
      return refuse(busy("the server is receiving too many request bodies at once; retry later"));
    }
    reserved_ = body;
    state_->buffered_bytes += body;
    if (!parser_->is_done() && beast::iequals(header[http::field::expect], "100-continue")) {
      // Nothing else is being written on this connection now, and 25 bytes fit any socket buffer.
      beast::error_code ignored;
      net::write(stream_.socket(), net::buffer(std::string_view("HTTP/1.1 100 Continue\r\n\r\n")), ignored);
    }
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_request(ec); });
  }

  void on_request(beast::error_code ec) {
    if (ended(ec)) return close();
    if (ec) return reject(ec);
    HttpRequest request = parser_->release();
    ++served_;
    stream_.expires_never();  // generation may take long; writes set their own deadline
    exchange_ = std::make_shared<Exchange>(shared_from_this(), std::move(request));
    response_complete_ = false;
    watch_peer();
    if (preflight_) return answer_preflight();
    state_->handler(exchange_);
  }

  // A CORS preflight is the server's to answer: no route or key is involved.
  void answer_preflight() {
    HeaderList headers;
    const http::status status = state_->cors.preflight(exchange_->request(), headers);
    if (status == http::status::forbidden) {
      const std::string message =
          fmt::format("the origin {} may not call this server (--allowed-origins)", origin_.substr(0, 200));
      return exchange_->respond(status, "application/json", ApiError(403, message).body().dump());
    }
    exchange_->respond(status, "text/plain", "", headers);
  }

  // A request the parser refused: answer in the OpenAI error shape and close.
  void reject(beast::error_code ec) {
    const bool too_large = ec == http::error::body_limit;
    const bool header_too_large = ec == http::error::header_limit;
    const auto status = too_large          ? http::status::payload_too_large
                        : header_too_large ? http::status::request_header_fields_too_large
                                           : http::status::bad_request;
    const std::string message =
        too_large          ? fmt::format("request body exceeds the {} byte limit", limits().max_body_bytes)
        : header_too_large ? fmt::format("request headers exceed the {} byte limit", limits().max_header_bytes)
                           : fmt::format("malformed HTTP request: {}", ec.message());
    refuse({status, ApiError(static_cast<int>(status), message).body().dump()});
  }

  // Answers without reading (more of) the request, and closes.
  void refuse(Refusal refusal) {
    linger_ = true;
    http::response<http::string_body> response{refusal.status, 11};
    response.set(http::field::server, "nanoserve");
    response.set(http::field::content_type, "application/json");
    response.set(http::field::connection, "close");
    for (const auto& [name, value] : refusal.headers) response.set(name, value);
    for (const auto& [name, value] : cors_headers()) response.set(name, value);
    response.body() = std::move(refusal.body);
    write(serialize(response));
    finish_exchange(false);
  }

  // The answer is out and the sending side shut. What the client still sends is left unread (no
  // work for the io thread); the socket closes once the client has had time to read the answer.
  void close_later() {
    auto timer = std::make_shared<net::steady_timer>(stream_.get_executor(), kLingerTime);
    timer->async_wait([self = shared_from_this(), timer](beast::error_code) { self->stream_.close(); });
  }

  void release_body() {
    state_->buffered_bytes -= reserved_;
    reserved_ = 0;
  }

  // Reads while the response is produced: bytes are kept for the next request, an error means the
  // client is gone.
  void watch_peer() {
    watching_ = true;
    stream_.socket().async_read_some(buffer_.prepare(4096),
                                     [self = shared_from_this()](beast::error_code ec, size_t n) {
                                       self->watching_ = false;
                                       if (!ec) {
                                         self->buffer_.commit(n);
                                         if (self->buffer_.size() > kMaxPipelinedBytes) return self->fail();
                                         if (!self->response_complete_ || self->writing_) return self->watch_peer();
                                         return self->after_response();
                                       }
                                       if (ec == net::error::operation_aborted && !self->closed_)
                                         return self->read_request();  // response done
                                       self->fail();
                                     });
  }

  void write_next() {
    if (writing_ || pending_.empty() || closed_) return;
    writing_ = true;
    stream_.expires_after(limits().write_timeout);
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
    release_body();
    if (!keep_alive_ || !state_->accepting) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      closed_ = true;
      if (linger_) return close_later();
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

  std::shared_ptr<HttpServer::State> state_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Exchange> exchange_;
  std::deque<std::string> pending_;
  uint64_t served_ = 0;    // requests read on this connection
  uint64_t reserved_ = 0;  // of State::buffered_bytes, for the request being read or answered
  bool writing_ = false, watching_ = false, closed_ = false;
  bool response_complete_ = false, keep_alive_ = true;
  bool linger_ = false;     // answered without reading the request: drop what still arrives before closing
  std::string origin_;      // the current request's Origin header
  bool preflight_ = false;  // the current request is a CORS preflight
};

std::string percent_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 && hex_digit(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

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
  for (const auto& [name, value] : connection_->cors_headers()) response.set(name, value);
  response.keep_alive(request_.keep_alive());
  response.body() = std::move(body);
  connection_->write(serialize(response));
  connection_->finish_exchange(request_.keep_alive());
}

void Exchange::start_stream(std::string_view content_type) {
  if (answered_ || closed_) return;
  answered_ = streaming_ = true;
  http::response<http::empty_body> response{http::status::ok, request_.version()};
  response.set(http::field::server, "nanoserve");
  response.set(http::field::content_type, content_type);
  response.set(http::field::cache_control, "no-cache");
  for (const auto& [name, value] : connection_->cors_headers()) response.set(name, value);
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

HttpServer::HttpServer(net::io_context& io, const std::string& host, uint16_t port, HttpLimits limits, Handler handler,
                       HeaderCheck check, CorsPolicy cors)
    : acceptor_(io), retry_(io), state_(std::make_shared<State>()) {
  state_->limits = limits;
  state_->handler = std::move(handler);
  state_->check = std::move(check);
  state_->cors = std::move(cors);
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

// Connections may outlive the server (their handlers still queued): they must not call it.
HttpServer::~HttpServer() {
  state_->accepting = false;
  state_->handler = [](const std::shared_ptr<Exchange>&) {};
  state_->check = nullptr;
}

uint16_t HttpServer::port() const { return acceptor_.local_endpoint().port(); }

size_t HttpServer::connections() const { return state_->connections.size(); }

void HttpServer::start() {
  state_->accepting = true;
  accept();
}

void HttpServer::accept() {
  // The handlers hold the state: after the server is gone (accepting is false) they touch nothing else.
  acceptor_.async_accept([this, state = state_](beast::error_code ec, tcp::socket socket) {
    if (!state->accepting) return;
    if (ec) {
      // Out of file descriptors (or a similar passing failure): try again shortly, don't spin.
      retry_.expires_after(std::chrono::milliseconds(50));
      retry_.async_wait([this, state](beast::error_code) {
        if (state->accepting) accept();
      });
      return;
    }
    std::make_shared<Connection>(state_, std::move(socket))->start();
    accept();
  });
}

void HttpServer::stop_accepting() {
  state_->accepting = false;
  beast::error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
}

void HttpServer::close_idle() {
  std::vector<Connection*> idle;
  for (Connection* c : state_->connections) {
    if (c->idle()) idle.push_back(c);
  }
  for (Connection* c : idle) c->close();
}

}  // namespace nanoserve::server
