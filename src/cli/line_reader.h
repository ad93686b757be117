// What the terminal chat reads. On a terminal: libedit's line editing (arrows, Home/End, Ctrl-W,
// Ctrl-R search) with a history kept across runs; from a pipe or file: plain lines. A line ending
// in '\' continues on the next, and lines pasted together arrive as one message.
#pragma once

#include <string>

struct editline;
struct history;

namespace nanoserve::cli {

class LineReader {
 public:
  enum class Status { Line, Interrupted, End };  // Interrupted: Ctrl-C at the prompt; End: Ctrl-D or end of input

  // history_path: where the terminal history is loaded from and saved (empty: not kept).
  LineReader(bool terminal, std::string history_path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  Status read(std::string& message);
  bool terminal() const { return editor_ != nullptr; }

  // Set by the SIGINT handler: a read in progress returns Interrupted, and so does the next read
  // when the Ctrl-C came between two (while a command ran, before the editor took the terminal).
  static void interrupt();
  // Drops a Ctrl-C that was meant for something else (a reply it stopped), not for the prompt.
  static void forget_interrupt();

 private:
  Status read_line(std::string& line, bool continuation);
  bool more_input_waiting() const;  // the rest of a paste, already typed into the terminal

  struct editline* editor_ = nullptr;
  struct history* history_ = nullptr;
  std::string history_path_;
};

// ~/.nanoserve_history, or empty when there is no home directory.
std::string default_history_path();

}  // namespace nanoserve::cli
