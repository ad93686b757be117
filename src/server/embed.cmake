# Writes OUTPUT, a C++ file defining nanoserve::server::chat_page_html() as the bytes of INPUT.
file(READ "${INPUT}" content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${content}")
file(WRITE "${OUTPUT}" "// Generated from ${INPUT} by embed.cmake; do not edit.\n#include \"server/chat_page.h\"\n\n"
  "namespace nanoserve::server {\nnamespace {\nconstexpr char kPage[] = {${bytes}};\n}\n"
  "std::string_view chat_page_html() { return {kPage, sizeof(kPage)}; }\n}  // namespace nanoserve::server\n")
