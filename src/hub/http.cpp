#include "hub/http.h"

#include <curl/curl.h>

#include <cstdio>
#include <memory>

#include "util/error.h"

namespace nanoserve::hub {

namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
};

using Easy = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;
using Headers = std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)>;

size_t collect_header(char* data, size_t size, size_t count, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * count);
  const size_t colon = line.find(':');
  if (line.rfind("HTTP/", 0) == 0) headers->clear();  // a redirect's headers give way to the final response's
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t\r\n") + 1);
    (*headers)[name] = value;
  }
  return size * count;
}

size_t collect_body(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

Easy open(const std::string& url, const std::string& token, Headers& headers) {
  static CurlGlobal global;
  Easy curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) fail("cannot initialize libcurl");
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);  // give up on a transfer stalled for a minute
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "nanoserve/0.1");
  if (!token.empty()) headers.reset(curl_slist_append(headers.release(), ("Authorization: Bearer " + token).c_str()));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers.get());
  return curl;
}

void perform(CURL* curl, const std::string& url) {
  const CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) fail("{}: {}", url, curl_easy_strerror(rc));
}

}  // namespace

Http::Http(std::string token) : token_(std::move(token)) {}

HttpResponse Http::get(const std::string& url) {
  HttpResponse response;
  Headers headers(nullptr, &curl_slist_free_all);
  Easy curl = open(url, token_, headers);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, collect_header);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &response.headers);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &response.body);
  perform(curl.get(), url);
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

namespace {
struct Sink {
  std::FILE* file = nullptr;
  std::string path;
  uint64_t offset = 0;
  long status = 0;
  CURL* curl = nullptr;
  const std::function<void(uint64_t)>* on_bytes = nullptr;
};

// Opens the file on the first body bytes, once the status says whether the range was honoured.
size_t write_file(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  if (!sink->file) {
    curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &sink->status);
    if (sink->status != 200 && sink->status != 206) return 0;  // an error page is not the file
    sink->file = std::fopen(sink->path.c_str(), sink->status == 206 ? "ab" : "wb");
    if (!sink->file) return 0;
  }
  const size_t n = std::fwrite(data, 1, size * count, sink->file);
  (*sink->on_bytes)(n);
  return n;
}
}  // namespace

long Http::download(const std::string& url, const std::string& path, uint64_t offset,
                    const std::function<void(uint64_t)>& on_bytes) {
  Headers headers(nullptr, &curl_slist_free_all);
  Easy curl = open(url, token_, headers);
  Sink sink{nullptr, path, offset, 0, curl.get(), &on_bytes};
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, write_file);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &sink);
  const std::string range = std::to_string(offset) + "-";  // a server may ignore it and send everything (200)
  if (offset > 0) curl_easy_setopt(curl.get(), CURLOPT_RANGE, range.c_str());
  const CURLcode rc = curl_easy_perform(curl.get());
  if (sink.file) std::fclose(sink.file);
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && status != 200 && status != 206)) {
    fail("{}: transfer broke off ({}); run the same command again to resume", url, curl_easy_strerror(rc));
  }
  return status;
}

}  // namespace nanoserve::hub
