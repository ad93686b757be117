// Models from the Hugging Face Hub, in the cache layout huggingface_hub uses, so that Python tools
// and nanoserve share downloads:
//   $HF_HUB_CACHE/models--ORG--NAME/blobs/<etag>            file contents (LFS: sha256; else git blob id)
//   $HF_HUB_CACHE/models--ORG--NAME/snapshots/<commit>/<file>  symlinks to ../../blobs/<etag>
//   $HF_HUB_CACHE/models--ORG--NAME/refs/<revision>           the commit a branch or tag points to
// Environment: HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN (or the token file), HF_HUB_OFFLINE=1.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace nanoserve::hub {

struct RepoRef {
  std::string id;                 // ORG/NAME
  std::string revision = "main";  // branch, tag or commit
};

// "ORG/NAME" or "ORG/NAME@REVISION"; nullopt for anything else (e.g. a local path).
std::optional<RepoRef> parse_repo_ref(const std::string& text);

struct PullOptions {
  RepoRef repo;
  std::vector<std::string> include;  // glob patterns of files to fetch; empty: config, tokenizer, safetensors
};

// Downloads what is missing into the cache and returns the snapshot directory. Offline
// (HF_HUB_OFFLINE=1) it only looks in the cache. Throws Error with what the user can do about it.
std::string pull(const PullOptions& options);

// A model argument as every command takes it: an existing directory or file is used as is; ORG/NAME
// [@REVISION] is resolved through the cache, pulling it when missing unless offline.
std::string resolve_model(const std::string& argument);

std::string cache_root();  // $HF_HUB_CACHE, or $HF_HOME/hub, or ~/.cache/huggingface/hub

}  // namespace nanoserve::hub
