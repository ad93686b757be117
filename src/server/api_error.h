// An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with an HTTP
// status. Thrown anywhere below a route; the router turns it into the response.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace nanoserve::server {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = "", std::string type = "invalid_request_error",
           std::string code = "")
      : std::runtime_error(message),
        status(status),
        param(std::move(param)),
        type(std::move(type)),
        code(std::move(code)) {}

  // The response body: {"error": {...}}, with null for an empty param or code.
  nlohmann::json body() const {
    auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
    return {{"error", {{"message", what()}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}};
  }

  int status;
  std::string param, type, code;
};

}  // namespace nanoserve::server
