#include "cli/line_reader.h"

#include <histedit.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <iostream>

namespace nanoserve::cli {

namespace {

std::atomic<bool> g_interrupted{false};
bool g_continuation = false;  // which prompt libedit's callback draws

const char* prompt(EditLine*) { return g_continuation ? "... " : "> "; }

// A message continues on the next line when this one ends in a backslash (which is dropped).
bool continues(std::string& line) {
  if (line.empty() || line.back() != '\\') return false;
  line.pop_back();
  return true;
}

}  // namespace

void LineReader::interrupt() { g_interrupted = true; }
void LineReader::forget_interrupt() { g_interrupted = false; }

std::string default_history_path() {
  const char* home = std::getenv("HOME");
  return home && *home ? std::string(home) + "/.nanoserve_history" : "";
}

LineReader::LineReader(bool terminal, std::string history_path) : history_path_(std::move(history_path)) {
  if (!terminal) return;
  editor_ = el_init("nanoserve", stdin, stdout, stderr);
  if (!editor_) return;  // no usable terminal: plain lines
  history_ = history_init();
  HistEvent event;
  history(history_, &event, H_SETSIZE, 1000);
  history(history_, &event, H_SETUNIQUE, 1);
  if (!history_path_.empty()) history(history_, &event, H_LOAD, history_path_.c_str());
  el_set(editor_, EL_EDITOR, "emacs");
  el_set(editor_, EL_HIST, history, history_);
  el_set(editor_, EL_PROMPT, prompt);
  el_set(editor_, EL_SIGNAL, 1);  // libedit restores the terminal on a signal, then our handler runs
  el_source(editor_, nullptr);    // the user's ~/.editrc
}

LineReader::~LineReader() {
  if (history_) {
    HistEvent event;
    if (!history_path_.empty()) history(history_, &event, H_SAVE, history_path_.c_str());
    history_end(history_);
  }
  if (editor_) el_end(editor_);
}

LineReader::Status LineReader::read_line(std::string& line, bool continuation) {
  // Kept from before the read: the terminal driver flushed what was typed with the Ctrl-C, so
  // waiting in the editor would leave the user's Ctrl-C unanswered.
  if (g_interrupted.exchange(false)) return Status::Interrupted;
  if (!editor_) {
    if (!std::getline(std::cin, line)) {
      if (g_interrupted.exchange(false)) {
        std::cin.clear();
        return Status::Interrupted;
      }
      return Status::End;
    }
    return Status::Line;
  }
  g_continuation = continuation;
  int count = 0;
  const char* text = el_gets(editor_, &count);
  if (g_interrupted.exchange(false)) {
    el_reset(editor_);  // drop the half-typed line
    return Status::Interrupted;
  }
  if (!text || count <= 0) return Status::End;
  line.assign(text, static_cast<size_t>(count));
  if (!line.empty() && line.back() == '\n') line.pop_back();
  return Status::Line;
}

bool LineReader::more_input_waiting() const {
  pollfd fd{.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
  return ::poll(&fd, 1, 20) > 0;  // a paste arrives within microseconds; a person types slower than 20 ms
}

LineReader::Status LineReader::read(std::string& message) {
  message.clear();
  std::string line;
  bool continuation = false;
  for (;;) {
    const Status status = read_line(line, continuation);
    if (status != Status::Line) {
      if (status == Status::End && !message.empty()) break;  // Ctrl-D after a continued line sends it
      return status;
    }
    const bool more = continues(line) || (editor_ && more_input_waiting());
    if (continuation) message += '\n';
    message += line;
    continuation = true;
    if (!more) break;
  }
  if (history_ && message.find_first_not_of(" \t\n") != std::string::npos) {
    HistEvent event;
    history(history_, &event, H_ENTER, message.c_str());
  }
  return Status::Line;
}

}  // namespace nanoserve::cli
