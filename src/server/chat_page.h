// The chat page served at GET /: static/chat.html, compiled into the binary by CMake.
#pragma once

#include <string_view>

namespace nanoserve::server {

std::string_view chat_page_html();

}  // namespace nanoserve::server
