// nanoserve pull: download a model from the Hugging Face Hub into the shared cache.
#include <fmt/format.h>

#include "cli/commands.h"
#include "hub/hub.h"
#include "util/error.h"

namespace nanoserve::cli {

void register_pull(CLI::App& app) {
  struct Options {
    std::string repo;
    std::vector<std::string> include;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "pull",
      "Download a model from the Hugging Face Hub (cache shared with huggingface_hub; HF_TOKEN for gated models)");
  cmd->add_option("repo", opt->repo, "ORG/NAME or ORG/NAME@REVISION")->required();
  cmd->add_option(
      "--include", opt->include,
      "glob of files to fetch, repeatable (default: *.json *.safetensors *.jinja; e.g. --include '*Q4_K_M.gguf')");
  cmd->callback([opt] {
    auto ref = hub::parse_repo_ref(opt->repo);
    if (!ref) fail("'{}' is not a Hub repository id (ORG/NAME or ORG/NAME@REVISION)", opt->repo);
    const std::string path = hub::pull({*ref, opt->include});
    fmt::print("{}\n", path);
  });
}

}  // namespace nanoserve::cli
