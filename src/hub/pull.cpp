#include <fnmatch.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hub/hub.h"
#include "hub/http.h"
#include "util/error.h"
#include "util/json_parse.h"
#include "util/progress.h"

namespace nanoserve::hub {

namespace fs = std::filesystem;

namespace {

// What a default pull fetches: configuration, tokenizer, chat templates and safetensors weights.
const char* const kDefaultPatterns[] = {"*.json", "*.safetensors", "*.jinja"};

std::string env(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

bool offline() {
  const std::string v = env("HF_HUB_OFFLINE");
  return v == "1" || v == "true" || v == "TRUE" || v == "yes";
}

std::string hf_home() { return env("HF_HOME", env("HOME", "/root") + "/.cache/huggingface"); }

std::string token() {
  std::string t = env("HF_TOKEN");
  if (!t.empty()) return t;
  std::ifstream in(env("HF_TOKEN_PATH", hf_home() + "/token"));
  std::getline(in, t);
  t.erase(t.find_last_not_of(" \t\r\n") + 1);
  return t;
}

bool valid_name(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

struct RepoFile {
  std::string name;  // path in the repository
  std::string etag;  // blob name in the cache: the LFS sha256, else the git blob id
  uint64_t size = 0;
  bool lfs = false;
};

struct RepoInfo {
  std::string commit;
  std::vector<RepoFile> files;
};

fs::path repo_dir(const RepoRef& r) {
  std::string folder = "models--" + r.id;
  folder.replace(folder.find('/'), 1, "--");
  return fs::path(cache_root()) / folder;
}

std::string sha256_of(const fs::path& path) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size())) || in.gcount() > 0) {
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

[[noreturn]] void http_failure(const RepoRef& r, const std::string& what, long status) {
  if (status == 401 || status == 403) {
    fail(
        "{}: {} (HTTP {}). The repository is gated or private: accept its license on the Hub, then set HF_TOKEN "
        "or log in with `huggingface-cli login`",
        r.id, what, status);
  }
  if (status == 404) fail("{}: {} (HTTP 404): no such repository, revision or file", r.id, what);
  fail("{}: {} (HTTP {})", r.id, what, status);
}

RepoInfo fetch_info(Http& http, const std::string& endpoint, const RepoRef& r) {
  const std::string url = fmt::format("{}/api/models/{}/revision/{}?blobs=true", endpoint, r.id, r.revision);
  const HttpResponse response = http.get(url);
  if (response.status != 200) http_failure(r, "listing the repository failed", response.status);
  nlohmann::json j;
  try {
    j = parse_json(response.body, url);
  } catch (const Error&) {}
  if (!j.is_object() || !j.contains("sha") || !j.contains("siblings") || !j["siblings"].is_array()) {
    fail("{}: the Hub answered {} with something other than repository information", r.id, url);
  }
  RepoInfo info;
  info.commit = j["sha"].get<std::string>();
  if (!valid_name(info.commit)) fail("{}: the Hub returned an invalid commit id", r.id);
  for (const auto& s : j["siblings"]) {
    RepoFile f;
    f.name = s.value("rfilename", "");
    if (s.contains("lfs") && s["lfs"].is_object()) {
      f.lfs = true;
      f.etag = s["lfs"].value("sha256", "");
      f.size = s["lfs"].value("size", uint64_t{0});
    } else {
      f.etag = s.value("blobId", "");
      f.size = s.value("size", uint64_t{0});
    }
    const fs::path p(f.name);
    if (f.name.empty() || p.is_absolute() || f.name.find("..") != std::string::npos || !valid_name(f.etag)) {
      fail("{}: the Hub listed an unusable file entry {}", r.id, s.dump());
    }
    info.files.push_back(std::move(f));
  }
  return info;
}

bool wanted(const std::string& name, const std::vector<std::string>& include) {
  auto match = [&](const std::string& pattern) { return fnmatch(pattern.c_str(), name.c_str(), 0) == 0; };
  if (!include.empty()) return std::any_of(include.begin(), include.end(), match);
  return std::any_of(std::begin(kDefaultPatterns), std::end(kDefaultPatterns), [&](const char* p) { return match(p); });
}

// Downloads one file into blobs/ (resuming a partial .incomplete), verifies it, and links it into the snapshot.
void fetch_file(Http& http, const std::string& endpoint, const RepoRef& r, const RepoInfo& info, const RepoFile& f) {
  const fs::path dir = repo_dir(r), blob = dir / "blobs" / f.etag;
  if (!fs::exists(blob) || fs::file_size(blob) != f.size) {
    const fs::path partial = fs::path(blob.string() + ".incomplete");
    const uint64_t have = fs::exists(partial) ? fs::file_size(partial) : 0;
    ProgressBar bar(f.name, f.size);  // drawn when stderr is a terminal
    bar.advance(have);
    const std::string url = fmt::format("{}/{}/resolve/{}/{}", endpoint, r.id, info.commit, f.name);
    const long status = http.download(url, partial.string(), have, [&](uint64_t n) { bar.advance(n); });
    if (status != 200 && status != 206) http_failure(r, "downloading " + f.name + " failed", status);
    const uint64_t got = fs::exists(partial) ? fs::file_size(partial) : 0;
    if (got != f.size) {
      fs::remove(partial);
      fail("{}: {} arrived with {} bytes, expected {}; removed it, run the command again", r.id, f.name, got, f.size);
    }
    if (f.lfs) {
      const std::string digest = sha256_of(partial);
      if (digest != f.etag) {
        fs::remove(partial);
        fail("{}: {} is corrupted: sha256 {}, expected {}; removed it, run the command again", r.id, f.name, digest,
             f.etag);
      }
    }
    fs::rename(partial, blob);  // atomic: a blob is either absent or complete
  }
  const fs::path link = dir / "snapshots" / info.commit / f.name;
  fs::create_directories(link.parent_path());
  std::error_code ec;
  fs::remove(link, ec);
  fs::create_symlink(fs::relative(blob, link.parent_path()), link);
}

// The cached snapshot of a revision: refs/<revision> names its commit (a commit id names itself).
std::optional<fs::path> cached_snapshot(const RepoRef& r) {
  const fs::path dir = repo_dir(r);
  std::string commit = r.revision;
  std::ifstream ref(dir / "refs" / r.revision);
  if (ref) std::getline(ref, commit);
  const fs::path snapshot = dir / "snapshots" / commit;
  if (valid_name(commit) && fs::is_directory(snapshot)) return snapshot;
  return std::nullopt;
}

}  // namespace

std::optional<RepoRef> parse_repo_ref(const std::string& text) {
  RepoRef r;
  std::string id = text;
  const size_t at = text.find('@');
  if (at != std::string::npos) {
    id = text.substr(0, at);
    r.revision = text.substr(at + 1);
    if (!valid_name(r.revision)) return std::nullopt;
  }
  const size_t slash = id.find('/');
  if (slash == std::string::npos || !valid_name(id.substr(0, slash)) || !valid_name(id.substr(slash + 1)))
    return std::nullopt;
  r.id = id;
  return r;
}

std::string cache_root() { return env("HF_HUB_CACHE", hf_home() + "/hub"); }

std::string pull(const PullOptions& options) {
  const RepoRef& r = options.repo;
  if (offline()) {
    auto snapshot = cached_snapshot(r);
    if (!snapshot) fail("{}@{} is not in the cache ({}) and HF_HUB_OFFLINE is set", r.id, r.revision, cache_root());
    return snapshot->string();
  }
  const std::string endpoint = env("HF_ENDPOINT", "https://huggingface.co");
  Http http(token());
  const RepoInfo info = fetch_info(http, endpoint, r);
  const fs::path dir = repo_dir(r);
  fs::create_directories(dir / "blobs");
  fs::create_directories(dir / "refs");
  size_t fetched = 0;
  for (const auto& f : info.files) {
    if (!wanted(f.name, options.include)) continue;
    fetch_file(http, endpoint, r, info, f);
    ++fetched;
  }
  if (fetched == 0)
    fail("{}: no file matches {}", r.id, options.include.empty() ? "the default patterns" : "--include");
  if (r.revision != info.commit) {
    std::ofstream ref(dir / "refs" / r.revision, std::ios::trunc);
    ref << info.commit;
  }
  return (dir / "snapshots" / info.commit).string();
}

std::string resolve_model(const std::string& argument) {
  if (fs::exists(argument)) return argument;
  auto ref = parse_repo_ref(argument);
  if (!ref) fail("{}: no such file or directory, and not a Hub repository id (ORG/NAME[@REVISION])", argument);
  if (auto snapshot = cached_snapshot(*ref); snapshot && fs::exists(*snapshot / "config.json"))
    return snapshot->string();
  return pull({*ref, {}});
}

}  // namespace nanoserve::hub
