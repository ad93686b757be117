// Cross-origin requests (CORS): which web pages on other origins may call the server. By default
// none; --allowed-origins lists them, or '*' for any. Allowed origins get the Access-Control headers
// on every answer (errors and streams too), and their preflight OPTIONS requests are answered
// before the API key is asked for (a browser sends no credentials in a preflight).
#pragma once

#include <boost/beast/http.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nanoserve::server {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class CorsPolicy {
 public:
  explicit CorsPolicy(std::vector<std::string> allowed_origins = {});

  // The headers an answer to a request from `origin` carries (none for an origin not allowed).
  HeaderList response_headers(std::string_view origin) const;

  // OPTIONS with Origin and Access-Control-Request-Method.
  static bool is_preflight(const boost::beast::http::request_header<>& header);
  // The preflight's answer: 204 with what the browser asked for, or 403 for an origin not allowed.
  boost::beast::http::status preflight(const boost::beast::http::request_header<>& header, HeaderList& headers) const;

 private:
  bool allows(std::string_view origin) const;

  std::vector<std::string> allowed_;
  bool any_ = false;
};

}  // namespace nanoserve::server
