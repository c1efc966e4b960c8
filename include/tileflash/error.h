// tileflash: exact, IO-aware attention. Error type raised for every invalid input.
#pragma once

#include <stdexcept>
#include <string>

namespace tileflash {

// Every rule the library enforces raises this error. `argument()` names the
// offending argument (e.g. "q", "cu_seqlens_k", "dropout_p"); what() reads
// "tileflash: <argument>: <rule that was broken>".
class Error : public std::invalid_argument {
 public:
  Error(std::string argument, const std::string& rule)
      : std::invalid_argument("tileflash: " + argument + ": " + rule), argument_(std::move(argument)) {}
  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

// A failure of the runtime rather than of the input (CUDA error, out of memory).
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tileflash
