#include "server/cors.h"

#include <algorithm>

namespace nanoserve::server {

namespace http = boost::beast::http;

namespace {

std::string_view field(const http::request_header<>& header, http::field name) {
  const auto value = header[name];
  return {value.data(), value.size()};
}

}  // namespace

CorsPolicy::CorsPolicy(std::vector<std::string> allowed_origins) : allowed_(std::move(allowed_origins)) {
  any_ = std::find(allowed_.begin(), allowed_.end(), "*") != allowed_.end();
}

bool CorsPolicy::allows(std::string_view origin) const {
  return !origin.empty() && (any_ || std::find(allowed_.begin(), allowed_.end(), origin) != allowed_.end());
}

HeaderList CorsPolicy::response_headers(std::string_view origin) const {
  if (!allows(origin)) return {};
  if (any_) return {{"Access-Control-Allow-Origin", "*"}};
  return {{"Access-Control-Allow-Origin", std::string(origin)}, {"Vary", "Origin"}};
}

bool CorsPolicy::is_preflight(const http::request_header<>& header) {
  return header.method() == http::verb::options && !field(header, http::field::origin).empty() &&
         !field(header, http::field::access_control_request_method).empty();
}

http::status CorsPolicy::preflight(const http::request_header<>& header, HeaderList& headers) const {
  const std::string_view origin = field(header, http::field::origin);
  if (!allows(origin)) return http::status::forbidden;
  headers = response_headers(origin);
  headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
  // Whatever headers the page's client sends (the openai client adds its own x-stainless-* ones).
  const std::string_view requested = field(header, http::field::access_control_request_headers);
  if (!requested.empty()) headers.emplace_back("Access-Control-Allow-Headers", std::string(requested.substr(0, 4096)));
  headers.emplace_back("Access-Control-Max-Age", "600");
  return http::status::no_content;
}

}  // namespace nanoserve::server
