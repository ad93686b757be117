// The few HTTP calls the Hub needs, through libcurl.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace nanoserve::hub {

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // for small responses (API calls)
};

class Http {
 public:
  explicit Http(std::string token);  // token: sent as a Bearer header when not empty

  HttpResponse get(const std::string& url);  // throws Error on a transport failure

  // Streams the body of `url` into `path`, from byte `offset` when the file already holds that
  // many (a range request; the server may answer with the whole file, which is then rewritten).
  // on_bytes reports progress. Returns the status; throws Error when the transfer breaks off.
  long download(const std::string& url, const std::string& path, uint64_t offset,
                const std::function<void(uint64_t)>& on_bytes);

 private:
  std::string token_;
};

}  // namespace nanoserve::hub
